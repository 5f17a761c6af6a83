"""Turn pydantic's validation errors and hostile text into the OpenAI error wording (contract §5.2).

Pure functions, no I/O: `translate` picks the error a caller most needs to see and words it the way the
OpenAI API does; `reject_unstorable_text` refuses values Postgres cannot store (NUL, lone surrogates) and
JSON nested deeper than any real request needs.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from pydantic import ValidationError

from orchestrator.domain.errors import InvalidRequest

MAX_DEPTH = 64

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "an array",
    "literal_error": "a string",
}
_RANGE = {
    "greater_than_equal": ("below", "minimum", ">=", "ge"),
    "greater_than": ("below", "minimum", ">", "gt"),
    "less_than_equal": ("above", "maximum", "<=", "le"),
    "less_than": ("above", "maximum", "<", "lt"),
}


def translate(error: ValidationError, body: Any) -> InvalidRequest:
    """The most useful pydantic error, worded the way the OpenAI API words it."""
    details = error.errors(include_url=False)
    located = [(detail, *_locate(detail, body)) for detail in details]
    detail, param, label_at = located[0]
    if label_at is not None:
        picked = _pick_branch(located, label_at)
        if picked is None:
            return _union_type(
                param, detail, [d for d, _, at in located if _same_field(d, detail, at, label_at)]
            )
        detail, param = picked
    return _word(detail, param)


def _locate(detail: dict, body: Any) -> tuple[str, int | None]:
    """The caller's path to the bad value, and where the first union branch label sits in `loc`.

    pydantic puts union branch labels (`str`, `list[...]`, tagged-union tags) in `loc`; walking the request
    body alongside tells them apart from keys the caller sent."""
    loc, kind = detail["loc"], detail["type"]
    path, node, label_at = "", body, None
    for position, part in enumerate(loc):
        last = position == len(loc) - 1
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            path, node = path + f"[{part}]", node[part]
        elif (
            isinstance(node, dict)
            and isinstance(part, str)
            and (part in node or (last and kind == "missing"))
        ):
            path, node = (f"{path}.{part}" if path else part), node.get(part)
        elif label_at is None:
            label_at = position
    return path, label_at


def _is_branch_mismatch(detail: dict, label_at: int) -> bool:
    """The value is not even of the JSON type this union branch takes: not the branch the caller meant."""
    if len(detail["loc"]) != label_at + 1:
        return False
    kind = detail["type"]
    if kind == "literal_error":
        return not isinstance(detail.get("input"), str)
    return kind.endswith("_type")


def _same_field(detail: dict, first: dict, at: int | None, label_at: int) -> bool:
    return at == label_at and detail["loc"][:label_at] == first["loc"][:label_at]


def _pick_branch(located: list, label_at: int) -> tuple[dict, str] | None:
    first = located[0][0]
    for detail, param, at in located:
        if _same_field(detail, first, at, label_at) and not _is_branch_mismatch(detail, label_at):
            return detail, param
    return None


def _union_type(param: str, first: dict, branches: list[dict]) -> InvalidRequest:
    names: list[str] = []
    for detail in branches:
        name = _TYPE_NAMES.get(detail["type"], "a valid value")
        if name not in names:
            names.append(name)
    return _type_error(param, join_alternatives(names, "or"), first.get("input"))


def _word(detail: dict, param: str) -> InvalidRequest:
    kind, ctx, value = detail["type"], detail.get("ctx") or {}, detail.get("input")
    if ctx.get("rule"):
        return _rule(kind, param, detail["msg"], ctx)
    if kind == "missing":
        return missing(param)
    if kind == "extra_forbidden":
        return InvalidRequest(f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter")
    if kind == "union_tag_not_found":
        return missing(_child(param, ctx.get("discriminator", "type").strip("'")))
    if kind == "union_tag_invalid":
        tags = _quoted(ctx.get("expected_tags", ""))
        return invalid_value(_child(param, ctx.get("discriminator", "type").strip("'")), ctx.get("tag"), tags)
    if kind == "literal_error" and isinstance(value, str):
        return invalid_value(param, value, _quoted(ctx.get("expected", "")))
    if kind in _TYPE_NAMES:
        return _type_error(param, _TYPE_NAMES[kind], value)
    if kind.endswith("_type"):
        return _type_error(param, "a valid value", value)
    if kind == "string_too_long":
        return string_too_long(param, ctx["max_length"], len(value))
    if kind == "string_too_short":
        return InvalidRequest(
            f"{_invalid(param)}: empty string. Expected a string with minimum length {ctx['min_length']}, "
            "but got an empty string instead.",
            param=param or None,
            code="empty_string",
        )
    if kind in {"too_long", "too_short"}:
        return _array_length(kind, param, ctx)
    if kind in _RANGE:
        return out_of_range(param, kind, ctx, value)
    if kind == "string_pattern_mismatch":
        return InvalidRequest(
            f"{_invalid(param)}: string does not match pattern. Expected a string that matches the "
            f"pattern '{ctx.get('pattern')}'.",
            param=param or None,
            code="invalid_value",
        )
    return InvalidRequest(
        f"{_invalid(param)}: {_sentence(detail['msg'])}", param=param or None, code="invalid_value"
    )


def _rule(kind: str, param: str, message: str, ctx: dict) -> InvalidRequest:
    if kind == "property_name_above_max_length":
        key = ctx["key"]
        return InvalidRequest(
            f"Invalid property name in '{param}': '{key}' is too long. Expected a string with maximum length "
            f"{ctx['max']}, but got a string with length {ctx['length']} instead.",
            param=_child(param, key),
            code=kind,
        )
    return InvalidRequest(f"{_invalid(param)}: {_sentence(message)}", param=param or None, code=kind)


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def invalid_value(param: str, value: Any, supported: list[str]) -> InvalidRequest:
    choices = join_alternatives([f"'{item}'" for item in supported], "and")
    return InvalidRequest(
        f"Invalid value: '{value}'. Supported values are: {choices}.",
        param=param or None,
        code="invalid_value",
    )


def string_too_long(param: str, maximum: int, length: int) -> InvalidRequest:
    return InvalidRequest(
        f"{_invalid(param)}: string too long. Expected a string with maximum length {maximum}, "
        f"but got a string with length {length} instead.",
        param=param or None,
        code="string_above_max_length",
    )


def out_of_range(param: str, kind: str, ctx: dict, value: Any) -> InvalidRequest:
    word, relation, op, key = _RANGE[kind]
    limit = ctx.get(key, next(iter(ctx.values()), ""))
    number = "decimal" if isinstance(limit, float) else "integer"
    return InvalidRequest(
        f"{_invalid(param)}: {number} {word} {relation} value. Expected a value {op} {_number(limit)}, "
        f"but got {_number(value)} instead.",
        param=param or None,
        code=f"{number}_{word}_{'min' if word == 'below' else 'max'}_value",
    )


def _array_length(kind: str, param: str, ctx: dict) -> InvalidRequest:
    actual = ctx.get("actual_length")
    if kind == "too_long":
        return InvalidRequest(
            f"{_invalid(param)}: array too long. Expected an array with maximum length {ctx['max_length']}, "
            f"but got an array with length {actual} instead.",
            param=param or None,
            code="array_above_max_length",
        )
    if not actual:
        return InvalidRequest(
            f"{_invalid(param)}: empty array. Expected an array with minimum length {ctx['min_length']}, "
            "but got an empty array instead.",
            param=param or None,
            code="empty_array",
        )
    return InvalidRequest(
        f"{_invalid(param)}: array too short. Expected an array with minimum length {ctx['min_length']}, "
        f"but got an array with length {actual} instead.",
        param=param or None,
        code="array_below_min_length",
    )


def _type_error(param: str, expected: str, value: Any) -> InvalidRequest:
    subject = f"'{param}'" if param else "request body"
    return InvalidRequest(
        f"Invalid type for {subject}: expected {expected}, but got {json_type(value)} instead.",
        param=param or None,
        code="invalid_type",
    )


def json_type(value: Any) -> str:
    """A JSON value's type the way the OpenAI messages name it ("an integer", "an array", ...)."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a decimal"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "an object"
    return "an unknown type"


def join_alternatives(items: list[str], conjunction: str) -> str:
    """'a' / 'a' and 'b' / 'a', 'b', and 'c' (the OpenAI list style)."""
    if len(items) <= 2:
        return f" {conjunction} ".join(items)
    return ", ".join(items[:-1]) + f", {conjunction} " + items[-1]


def _quoted(text: str) -> list[str]:
    return re.findall(r"'((?:[^'\\]|\\.)*)'", text)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _invalid(param: str) -> str:
    return f"Invalid '{param}'" if param else "Invalid request body"


def _sentence(text: str) -> str:
    return text if text.endswith(".") else text + "."


def _number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


def reject_unstorable_text(value: Any, path: str = "", *, max_depth: int = MAX_DEPTH) -> None:
    """Postgres stores neither NUL characters nor lone surrogates; refuse them (in keys too) before any
    write, and refuse JSON nested deeper than `max_depth`. Iterative, so hostile nesting cannot overflow
    the stack."""
    pending: deque[tuple[Any, str, int]] = deque([(value, path, 0)])
    while pending:
        item, where, depth = pending.popleft()
        if isinstance(item, str):
            check_text(item, where)
            continue
        if not isinstance(item, dict | list):
            continue
        if depth >= max_depth:
            raise InvalidRequest(
                f"{_invalid(where)}: JSON nested too deeply. Expected at most {max_depth} levels of nesting.",
                param=where or None,
                code="invalid_value",
            )
        if isinstance(item, dict):
            for key, child in item.items():
                child_path = _child(where, str(key))
                check_text(str(key), child_path)
                pending.append((child, child_path, depth + 1))
        else:
            pending.extend((child, f"{where}[{index}]", depth + 1) for index, child in enumerate(item))


def check_text(text: str, param: str) -> None:
    """Refuse a NUL character or a lone surrogate in one value (body, path or query)."""
    if "\x00" in text:
        raise InvalidRequest(
            f"{_invalid(param)}: string contains a NUL character (\\u0000), which is not allowed.",
            param=param or None,
            code="invalid_value",
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            shown = _printable(param)
            raise InvalidRequest(
                f"{_invalid(shown)}: string contains a lone surrogate, which is not valid Unicode.",
                param=shown or None,
                code="invalid_value",
            ) from None


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
