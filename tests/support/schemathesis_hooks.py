"""Loaded into the `st` process by tests/e2e/test_schemathesis.py (SCHEMATHESIS_HOOKS).

With `--workers 4`, Schemathesis builds and prints Hypothesis strategies in four threads, and Hypothesis
parses Python source there (to describe the lambdas in a strategy, and in its pretty printer). Neither its
caches of parsed sources nor CPython 3.11's AST builder (whose recursion counter is shared by all threads)
is safe for concurrent use: two threads meeting there fail the run with a "Runtime Error" inside
Schemathesis (a KeyError from a cache, or "SystemError: AST constructor recursion depth mismatch"),
whatever the server answered, and the more operations the document has, the likelier. One parse and one
lambda description at a time remove the race; each source is parsed once, so it costs nothing to speak of.
"""

from __future__ import annotations

import ast
import threading

from hypothesis.internal import lambda_sources

_describing = threading.Lock()
_parsing = threading.Lock()
_describe = lambda_sources.lambda_description
_parse = ast.parse


def _describe_one_at_a_time(function):
    with _describing:
        return _describe(function)


def _parse_one_at_a_time(*args, **kwargs):
    with _parsing:
        return _parse(*args, **kwargs)


lambda_sources.lambda_description = _describe_one_at_a_time
ast.parse = _parse_one_at_a_time
