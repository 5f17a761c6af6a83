"""Attribute filters of vector store search (the SDK's ComparisonFilter and CompoundFilter), evaluated
against a store file's attributes.

Comparisons are typed: a boolean equals only a boolean, a number only a number, a string only a string;
`gt`/`gte`/`lt`/`lte` order two numbers or two strings and are false otherwise. A missing attribute
matches only `ne` and `nin`.
"""

from __future__ import annotations

import operator
from typing import Any

_ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def matches(node: dict[str, Any], attributes: dict[str, Any]) -> bool:
    kind = node["type"]
    if kind == "and":
        return all(matches(child, attributes) for child in node["filters"])
    if kind == "or":
        return any(matches(child, attributes) for child in node["filters"])
    if node["key"] not in attributes:
        return kind in ("ne", "nin")
    return _compare(kind, attributes[node["key"]], node["value"])


def _compare(kind: str, actual: Any, expected: Any) -> bool:
    if kind == "eq":
        return _equal(actual, expected)
    if kind == "ne":
        return not _equal(actual, expected)
    if kind in ("in", "nin"):
        options = expected if isinstance(expected, list) else [expected]
        found = any(_equal(actual, option) for option in options)
        return found if kind == "in" else not found
    if _kind(actual) != _kind(expected) or _kind(actual) == "bool":
        return False
    return _ORDER[kind](actual, expected)


def _equal(actual: Any, expected: Any) -> bool:
    return _kind(actual) == _kind(expected) and actual == expected


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__
