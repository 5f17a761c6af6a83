"""Turn pydantic's validation errors and hostile text into the OpenAI error wording (contract §5.2)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from orchestrator.domain.errors import InvalidRequest

_TYPE_NAMES = {
    "string": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "dict": "an object",
    "model": "an object",
    "list": "an array",
    "literal": "a supported value",
}


def param_path(loc: tuple[Any, ...], body: Any) -> str:
    """The caller's path to the bad value. pydantic puts union branch labels in `loc`; they are
    dropped by walking the request body alongside and keeping only keys that exist in it."""
    path, node = "", body
    for position, part in enumerate(loc):
        last = position == len(loc) - 1
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            path, node = path + f"[{part}]", node[part]
        elif isinstance(node, dict) and (part in node or last):
            path, node = (f"{path}.{part}" if path else str(part)), node.get(part)
    return path


def _json_type(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "an object"
    return "an unknown type"


def translate(error: ValidationError, body: Any) -> InvalidRequest:
    """The first pydantic error, worded the way the OpenAI API words it."""
    detail = error.errors(include_url=False)[0]
    kind, ctx, value = detail["type"], detail.get("ctx") or {}, detail.get("input")
    param = param_path(detail["loc"], body)
    if kind == "missing":
        return InvalidRequest(
            f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    if kind == "extra_forbidden":
        return InvalidRequest(f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter")
    if kind.endswith("_type") or kind in {"model_attributes_type", "dict_type", "union_tag_invalid"}:
        return _invalid_type(kind, param, value)
    if kind in {"literal_error", "enum", "union_tag_invalid"}:
        return InvalidRequest(
            f"Invalid value: '{value}'. Supported values are: {ctx.get('expected', '')}.",
            param=param,
            code="invalid_value",
        )
    if kind == "string_too_long":
        return InvalidRequest(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{ctx['max_length']}, but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )
    if kind == "too_long":
        return InvalidRequest(
            f"Invalid '{param}': array too long. Expected an array with maximum length "
            f"{ctx['max_length']}, but got an array with length {ctx.get('actual_length')} instead.",
            param=param,
            code="array_above_max_length",
        )
    if kind == "too_short":
        return InvalidRequest(
            f"Invalid '{param}': empty array. Expected an array with minimum length "
            f"{ctx['min_length']}, but got an empty array instead.",
            param=param,
            code="empty_array",
        )
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        return _out_of_range(kind, param, value, ctx)
    if kind == "string_pattern_mismatch":
        return InvalidRequest(
            f"Invalid '{param}': string does not match pattern. Expected a string that matches the "
            f"pattern '{ctx.get('pattern')}'.",
            param=param,
            code="invalid_value",
        )
    return InvalidRequest(f"Invalid '{param}': {detail['msg']}.", param=param, code="invalid_value")


def _invalid_type(kind: str, param: str, value: Any) -> InvalidRequest:
    expected = _TYPE_NAMES.get(kind.removesuffix("_type").split("_")[0], "a valid value")
    if kind == "union_tag_invalid" or kind.startswith("model"):
        expected = "an object"
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _out_of_range(kind: str, param: str, value: Any, ctx: dict) -> InvalidRequest:
    below = kind.startswith("greater")
    limit = next(iter(ctx.values()))
    number = "integer" if isinstance(value, int) and not isinstance(value, bool) else "decimal"
    word, relation, op = ("below", "minimum", ">=") if below else ("above", "maximum", "<=")
    return InvalidRequest(
        f"Invalid '{param}': {number} {word} {relation} value. Expected a value {op} {limit}, "
        f"but got {value} instead.",
        param=param,
        code=f"{number}_{word}_{'min' if below else 'max'}_value",
    )


def reject_unstorable_text(value: Any, path: str = "") -> None:
    """Postgres stores neither NUL characters nor lone surrogates; refuse them before any write."""
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            _check_text(str(key), child)
            reject_unstorable_text(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            reject_unstorable_text(item, f"{path}[{index}]")


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise InvalidRequest(
            f"Invalid '{path}': string contains a NUL character, which is not allowed.",
            param=path or None,
            code="invalid_value",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(
            f"Invalid '{path}': string is not valid Unicode (lone surrogate).",
            param=path or None,
            code="invalid_value",
        ) from None
