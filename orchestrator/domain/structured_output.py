"""The local model's structured output: one JSON value valid against a JSON Schema, built from the schema
(ARCHITECTURE.md, "The same model in the Responses and Chat Completions APIs").

    object             every property it lists, each built recursively
    string             the latest user message (or the first `enum` value, or `const`); `minLength` pads
                       it, `maxLength` cuts it; a `date-time`, `date`, `time` or `uuid` format gets a fixed
                       valid value, so a typed client (pydantic) can parse it
    integer, number    0, or its `minimum` (one past an `exclusiveMinimum`), never past its `maximum`
    boolean            true
    null               null
    array              empty, or `minItems` copies of its item (`prefixItems` first)
    anyOf, oneOf       the first branch; `allOf` merges its branches
    $ref               followed into the document (`#/$defs/...`, `#/definitions/...`, `#`)

Pure: no I/O. The chat face reads `response_format` (`reply`); the Responses face can call `build` on its
`text.format.schema` directly.
"""

from __future__ import annotations

import json
import math
from typing import Any

# A schema that refers to itself with no way out (an object whose required property is itself) has no
# finite instance; past this depth the value is cut with null.
MAX_DEPTH = 32
# The schema is the client's: a nested `minItems` or `minLength` in the billions must not take the process
# down. Past this many values the rest are null; past this many characters in all, strings are cut.
MAX_NODES = 10_000
MAX_TEXT = 100_000
_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00Z",
    "uuid": "00000000-0000-0000-0000-000000000000",
}


def reply(response_format: Any, text: str) -> str | None:
    """The reply text for a chat-shaped `response_format`, or None when it asks for plain text.

    `json_schema` gives the document built from its schema; `json_object` gives `{"reply": text}`."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return json.dumps({"reply": text})
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return json.dumps(build(schema if schema is not None else {"type": "object"}, text))
    return None


def build(schema: Any, text: str) -> Any:
    """A value valid against `schema`, with `text` in its strings."""
    return _Builder(schema, text).value(schema, 0)


class _Builder:
    """Builds the value. The schema comes from a client and is not checked first, so every keyword is
    read defensively (a keyword of the wrong type is ignored), and the value is bounded: past `MAX_NODES`
    values or `MAX_TEXT` characters (a huge `minItems` or `minLength`, nested) the rest is null or short."""

    def __init__(self, root: Any, text: str):
        self.root, self.text = root, text
        self.nodes, self.chars = MAX_NODES, MAX_TEXT

    def value(self, schema: Any, depth: int) -> Any:
        self.nodes -= 1
        if depth > MAX_DEPTH or self.nodes < 0:
            return None
        if not isinstance(schema, dict):
            return self._string({}) if schema is not False else None  # `true` (or `{}`) admits anything
        if "$ref" in schema:
            return self.value(self._resolve(schema["$ref"]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if _list(schema, "enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if _list(schema, key):
                return self.value(schema[key][0], depth + 1)
        if _list(schema, "allOf"):
            return self.value(self._merged(schema), depth + 1)
        return self._typed(schema, _type_of(schema), depth)

    def _typed(self, schema: dict, kind: Any, depth: int) -> Any:
        if kind == "object":
            return {
                str(name): self.value(sub, depth + 1) for name, sub in _dict(schema, "properties").items()
            }
        if kind == "array":
            return self._array(schema, depth)
        if kind in ("integer", "number"):
            return _number(schema, kind)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(schema)

    def _string(self, schema: dict) -> str:
        form = schema.get("format")
        value = _FORMATS.get(form, self.text) if isinstance(form, str) else self.text
        minimum, maximum = _count(schema, "minLength"), schema.get("maxLength")
        if len(value) < minimum:
            value = value.ljust(min(minimum, self.chars), ".")
        if isinstance(maximum, int) and not isinstance(maximum, bool) and 0 <= maximum < len(value):
            value = value[:maximum]
        value = value[: max(self.chars, 0)]
        self.chars -= len(value)
        return value

    def _array(self, schema: dict, depth: int) -> list:
        items = [self.value(sub, depth + 1) for sub in _list(schema, "prefixItems")]
        wanted = min(_count(schema, "minItems"), max(self.nodes, 0))
        item = schema.get("items", {})
        while len(items) < wanted and item is not False:
            items.append(self.value(item, depth + 1))
        return items

    def _merged(self, schema: dict) -> dict:
        merged = {key: value for key, value in schema.items() if key != "allOf"}
        for branch in schema["allOf"]:
            if isinstance(branch, dict) and "$ref" in branch:
                branch = self._resolve(branch["$ref"])
            if isinstance(branch, dict):
                properties = {**_dict(merged, "properties"), **_dict(branch, "properties")}
                merged = {**branch, **merged, "properties": properties}
        if not merged.get("properties"):
            merged.pop("properties", None)
        return merged

    def _resolve(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            return {}
        node = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return {}
        return node


def _list(schema: dict, key: str) -> list:
    value = schema.get(key)
    return value if isinstance(value, list) else []


def _dict(schema: dict, key: str) -> dict:
    value = schema.get(key)
    return value if isinstance(value, dict) else {}


def _count(schema: dict, key: str) -> int:
    value = schema.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _type_of(schema: dict) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        if "properties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
    return kind


def _number(schema: dict, kind: str) -> int | float:
    """0 when the bounds allow it, else the nearest value inside them."""
    low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
    low_open, high_open = _bound(schema, "exclusiveMinimum"), _bound(schema, "exclusiveMaximum")
    if low_open is not None and (low is None or low_open >= low):
        low = _inside(low_open, high if high_open is None else high_open, kind, step=1)
    if high_open is not None and (high is None or high_open <= high):
        high = _inside(high_open, low, kind, step=-1)
    value: float = 0
    if low is not None and value < low:
        value = math.ceil(low) if kind == "integer" else low
    if high is not None and value > high:
        value = math.floor(high) if kind == "integer" else high
    if kind == "integer" or isinstance(value, int):
        return int(value)
    return int(value) if value.is_integer() else value


def _inside(bound: float, other: float | None, kind: str, step: int) -> float:
    """The nearest value strictly past an exclusive `bound`, towards `other` (the opposite bound)."""
    if kind == "integer":
        return math.floor(bound) + 1 if step > 0 else math.ceil(bound) - 1
    if other is not None and abs(other - bound) <= 1:
        return (bound + other) / 2
    return bound + step


def _bound(schema: dict, key: str) -> float | None:
    value = schema.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or abs(value) > 1e300:
        return None  # not a number, or one past what a float holds (JSON integers are unbounded)
    return value
