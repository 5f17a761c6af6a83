"""Loaded by the `st` process of tests/e2e/test_schemathesis.py (SCHEMATHESIS_HOOKS).

Hypothesis names a `.filter(lambda …)` by parsing the lambda's source file with `ast.parse`, and
schemathesis' workers do it from several threads at once. On CPython 3.11 two parses that overlap (the
garbage collector can switch threads in the middle of building the tree) share the parser's recursion
counter and one fails with "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905):
a runtime error that fails the run without any request being wrong. One parse at a time avoids it.
"""

from __future__ import annotations

import ast
import threading
import types

from hypothesis.internal import lambda_sources

_parsing = threading.Lock()


def _parse(*args, **kwargs):
    with _parsing:
        return ast.parse(*args, **kwargs)


# The module reads `ast.parse` through its own `ast` name: give it a copy of `ast` whose parse is locked.
lambda_sources.ast = types.SimpleNamespace(**{**vars(ast), "parse": _parse})
