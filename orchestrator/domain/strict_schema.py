"""Whether a JSON Schema can be held strictly (structured outputs' rules, as the hosted API checks a
`strict: true` function tool's `parameters`): the root is an object; every object says
`additionalProperties: false` and lists every one of its properties in `required`. Subschemas are checked
wherever they sit (properties, items, anyOf, $defs). No I/O.

    problem(schema) -> str | None      the first rule broken, where (as hosted: "In context=(...)")
"""

from __future__ import annotations

from typing import Any

# Where subschemas sit: keywords holding one, a list of them, or a name → subschema map.
ONE = ("items", "additionalItems", "not", "contains")
MANY = ("anyOf", "allOf", "oneOf", "prefixItems")
NAMED = ("properties", "$defs", "definitions")


def problem(schema: Any) -> str | None:
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return "In context=(), the root schema must be an object ('type': 'object')."
    return _check(schema, ())


def _check(schema: Any, context: tuple[str, ...]) -> str | None:
    if not isinstance(schema, dict):
        return None
    found = _object_rule(schema, context) if _is_object(schema) else None
    return found or next(
        (broken for key, sub in _subschemas(schema) if (broken := _check(sub, (*context, *key)))), None
    )


def _is_object(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in schema


def _object_rule(schema: dict[str, Any], context: tuple[str, ...]) -> str | None:
    where = f"In context=({', '.join(repr(part) for part in context)})"
    if schema.get("additionalProperties") is not False:
        return f"{where}, 'additionalProperties' is required to be supplied and to be false."
    properties = schema.get("properties") or {}
    missing = [name for name in properties if name not in (schema.get("required") or [])]
    if missing:
        return (
            f"{where}, 'required' is required to be supplied and to be an array including every key in "
            f"properties. Missing '{missing[0]}'."
        )
    return None


def _subschemas(schema: dict[str, Any]):
    for key in ONE:
        if isinstance(schema.get(key), dict):
            yield (key,), schema[key]
    for key in MANY:
        for index, sub in enumerate(schema.get(key) or []):
            yield (key, str(index)), sub
    for key in NAMED:
        for name, sub in (schema.get(key) or {}).items():
            yield (key, name), sub
