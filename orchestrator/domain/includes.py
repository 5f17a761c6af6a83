"""What `include[]` adds to the items the Responses and Conversations APIs show (contract §3, §5).

Items are stored whole. The parts that only an `include` value asks for are left out when an item is
shown without it: a search's results, a code run's outputs, reasoning's encrypted content and the logprobs
of output text. The other values are accepted and change nothing (we keep no such parts).
"""

from __future__ import annotations

from typing import Any

INCLUDABLE = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
)
# Item type → (the include value that shows the field, the field: null without it).
_NULLED = {
    "file_search_call": ("file_search_call.results", "results"),
    "code_interpreter_call": ("code_interpreter_call.outputs", "outputs"),
}


def shown(item: dict[str, Any], include: frozenset[str] | set[str] | tuple[str, ...]) -> dict[str, Any]:
    """The item as a caller who asked for `include` sees it (the stored item is left as it is)."""
    kind = item.get("type")
    if kind in _NULLED:
        value, field = _NULLED[kind]
        if value not in include and item.get(field) is not None:
            return {**item, field: None}
    elif kind == "reasoning":
        if "reasoning.encrypted_content" not in include and "encrypted_content" in item:
            return {key: value for key, value in item.items() if key != "encrypted_content"}
    elif kind == "message" and "message.output_text.logprobs" not in include:
        content = item.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and "logprobs" in p for p in content):
            parts = [_without_logprobs(part) for part in content]
            return {**item, "content": parts}
    return item


def _without_logprobs(part: Any) -> Any:
    if isinstance(part, dict) and "logprobs" in part:
        return {key: value for key, value in part.items() if key != "logprobs"}
    return part
