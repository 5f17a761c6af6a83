"""StreamReader: chat-completion chunks in, provider chunks out, for the ways real servers stream."""

from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletionChunk

from orchestrator.domain.model import Finish, ModelRequest, TextDelta, ToolCallDelta, Usage
from orchestrator.providers import tokens
from orchestrator.providers.upstream import EmptyStream, StreamReader

REQUEST = ModelRequest(model="m", messages=[{"role": "user", "content": "hi"}], prompt_tokens=11)


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None, index: int = 0):
    choices = (
        []
        if delta is None and finish is None
        else [{"index": index, "delta": delta or {}, "finish_reason": finish}]
    )
    return ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": choices,
            "usage": usage,
        }
    )


def call(index: int, id: str | None = None, name: str | None = None, arguments: str | None = None) -> dict:  # noqa: A002
    function = {k: v for k, v in (("name", name), ("arguments", arguments)) if v is not None}
    fragment = {"index": index, "function": function, **({"id": id, "type": "function"} if id else {})}
    return {"tool_calls": [fragment]}


def read(*chunks) -> list:
    reader = StreamReader(REQUEST, "m")
    out = [piece for c in chunks for piece in reader.take(c)]
    return out + list(reader.finish())


def test_text_deltas_pass_through_and_the_role_only_chunk_yields_nothing():
    out = read(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, finish="stop"),
        chunk(usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}),
    )
    assert out == [TextDelta("Hel"), TextDelta("lo"), Usage(5, 2), Finish("stop")]


def test_fragments_of_several_calls_keep_their_index_and_arguments():
    out = read(
        chunk(call(0, "call_a", "first", "")),
        chunk(call(0, arguments='{"a": ')),
        chunk(call(1, "call_b", "second", '{"b"')),
        chunk(call(0, arguments="1}")),
        chunk(call(1, arguments=": 2}")),
        chunk({}, finish="tool_calls"),
    )
    deltas = [c for c in out if isinstance(c, ToolCallDelta)]
    assert [(d.index, d.id, d.name) for d in deltas if d.name] == [
        (0, "call_a", "first"),
        (1, "call_b", "second"),
    ]
    for index, expected in ((0, {"a": 1}), (1, {"b": 2})):
        assert json.loads("".join(d.arguments for d in deltas if d.index == index)) == expected
    assert out[-1] == Finish("tool_calls")


def test_upstream_indices_are_renumbered_from_zero_in_order_of_appearance():
    out = read(
        chunk(call(3, "call_x", "x", "{}")),
        chunk(call(7, "call_y", "y", "{}")),
        chunk({}, finish="tool_calls"),
    )
    assert [(d.index, d.name) for d in out if isinstance(d, ToolCallDelta)] == [(0, "x"), (1, "y")]


def test_calls_that_all_come_at_index_zero_with_their_own_ids_are_separate_calls():
    out = read(
        chunk(call(0, "call_1", "a", "{}")), chunk(call(0, "call_2", "b", "{}")), chunk({}, finish="stop")
    )
    assert [(d.index, d.id, d.name) for d in out if isinstance(d, ToolCallDelta)] == [
        (0, "call_1", "a"),
        (1, "call_2", "b"),
    ]
    assert out[-1] == Finish("tool_calls")  # some servers say "stop" after tool calls


def test_a_server_repeating_the_id_in_every_fragment_still_makes_one_call():
    out = read(
        chunk(call(0, "call_1", "a", '{"x":')),
        chunk(call(0, "call_1", None, "1}")),
        chunk({}, finish="tool_calls"),
    )
    deltas = [d for d in out if isinstance(d, ToolCallDelta)]
    assert {d.index for d in deltas} == {0} and "".join(d.arguments for d in deltas) == '{"x":1}'


def test_a_call_whose_name_comes_late_is_announced_with_the_arguments_held_so_far():
    out = read(
        chunk(call(0, "call_1", None, '{"x"')),
        chunk(call(0, name="late", arguments=": 1}")),
        chunk({}, finish="tool_calls"),
    )
    assert [d for d in out if isinstance(d, ToolCallDelta)] == [
        ToolCallDelta(0, "call_1", "late", '{"x": 1}')
    ]


def test_a_later_call_is_not_announced_before_an_earlier_one():
    out = read(
        chunk(call(0, "call_1", None, "{")),
        chunk(call(1, "call_2", "second", "{}")),
        chunk(call(0, name="first", arguments="}")),
        chunk({}, finish="tool_calls"),
    )
    assert [(d.index, d.name) for d in out if isinstance(d, ToolCallDelta) and d.name] == [
        (0, "first"),
        (1, "second"),
    ]


@pytest.mark.parametrize(
    ("upstream", "ours"),
    [("stop", "stop"), ("length", "length"), ("content_filter", "stop"), (None, "stop")],
)
def test_finish_reasons_map_to_stop_or_length(upstream, ours):
    assert read(chunk({"content": "x"}), chunk({}, finish=upstream))[-1] == Finish(ours)


def test_a_legacy_function_call_finish_means_tool_calls():
    assert read(chunk(call(0, "call_1", "f", "{}")), chunk({}, finish="function_call"))[-1] == Finish(
        "tool_calls"
    )


def test_without_usage_from_the_server_the_reply_is_counted_and_the_prompt_taken_from_the_request():
    out = read(chunk({"content": "one two three"}), chunk({}, finish="stop"))
    assert out[-2] == Usage(11, tokens.count("one two three", "m"))


def test_a_refusal_is_shown_as_text():
    assert read(chunk({"refusal": "I can't help with that."}), chunk({}, finish="stop"))[0] == TextDelta(
        "I can't help with that."
    )


def test_choices_other_than_the_first_are_ignored():
    out = read(chunk({"content": "a"}), chunk({"content": "b"}, index=1), chunk({}, finish="stop"))
    assert [c for c in out if isinstance(c, TextDelta)] == [TextDelta("a")]


def test_a_stream_with_no_output_and_no_finish_is_an_error():
    with pytest.raises(EmptyStream):
        read(chunk({"role": "assistant", "content": ""}))


def test_started_turns_true_with_the_first_output():
    reader = StreamReader(REQUEST, "m")
    list(reader.take(chunk({"role": "assistant", "content": ""})))
    assert not reader.started
    list(reader.take(chunk({"content": "x"})))
    assert reader.started
