"""The decisions of one model call, with no database: steps opened, deltas sent, how the leg ends."""

from orchestrator.domain.lifecycle import RunEvent, RunStatus, StepType
from orchestrator.domain.model import Finish, TextDelta, ToolCallDelta, Usage
from orchestrator.domain.model_call import Delta, ModelCall, Open, add_usage, failed


def play(call: ModelCall, *chunks) -> list:
    return [effect for chunk in chunks for effect in call.take(chunk)]


def texts(effects) -> list[str]:
    return [e.delta["content"][0]["text"]["value"] for e in effects if isinstance(e, Delta) and e.on_message]


def test_text_opens_one_message_step_and_streams_each_piece_with_annotations_only_on_the_first():
    call = ModelCall(prompt_tokens=7)
    effects = play(call, TextDelta("Hello "), TextDelta("there"), Usage(7, 2), Finish("stop"))
    assert effects[0] == Open(StepType.MESSAGE_CREATION)
    assert sum(isinstance(e, Open) for e in effects) == 1
    assert texts(effects) == ["Hello ", "there"]
    first, second = [e.delta["content"][0]["text"] for e in effects[1:]]
    assert first == {"value": "Hello ", "annotations": []} and second == {"value": "there"}
    assert call.content() == [{"type": "text", "text": {"value": "Hello there", "annotations": []}}]
    assert call.usage() == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert call.ending(cancelled=False).target is RunStatus.COMPLETED


def test_tool_call_fragments_open_a_tool_step_and_add_up_to_the_calls_the_run_asks_for():
    call = ModelCall()
    effects = play(
        call,
        ToolCallDelta(index=0, id="call_a", name="lookup"),
        ToolCallDelta(index=0, arguments='{"q":'),
        ToolCallDelta(index=0, arguments='"x"}'),
        ToolCallDelta(index=1, id="call_b", name="other", arguments="{}"),
        Finish("tool_calls"),
    )
    assert effects[0] == Open(StepType.TOOL_CALLS)
    deltas = [e for e in effects if isinstance(e, Delta)]
    assert all(e.event is RunEvent.STEP_DELTA and not e.on_message for e in deltas)
    announced = deltas[0].delta["step_details"]["tool_calls"][0]
    assert announced == {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "lookup", "arguments": "", "output": None},
    }
    assert deltas[1].delta["step_details"]["tool_calls"][0] == {
        "index": 0,
        "type": "function",
        "function": {"arguments": '{"q":'},
    }
    assert [c["function"]["arguments"] for c in call.tool_calls()] == ['{"q":"x"}', "{}"]
    assert all(c["function"]["output"] is None for c in call.tool_calls())
    ending = call.ending(cancelled=False)
    assert ending.target is RunStatus.REQUIRES_ACTION
    assert [c["id"] for c in ending.values["required_action"]["submit_tool_outputs"]["tool_calls"]] == [
        "call_a",
        "call_b",
    ]
    assert call.content() is None


def test_a_redone_reply_streams_only_what_the_dead_worker_had_not_streamed():
    call = ModelCall()
    effects = []
    for chunk in (TextDelta("one "), TextDelta("two "), TextDelta("three")):
        for effect in call.take(chunk):
            if isinstance(effect, Open):
                call.streamed = "one tw"  # what watchers already hold, learnt as the step opens
            effects.append(effect)
    assert texts(effects) == ["o ", "three"]
    assert call.content()[0]["text"]["value"] == "one two three"


def test_a_redone_reply_that_differs_goes_on_from_where_it_differs():
    call = ModelCall(streamed="one two")
    assert texts(play(call, TextDelta("one "), TextDelta("six"))) == ["six"]


def test_a_cancel_wins_over_whatever_the_model_said_and_length_ends_incomplete():
    call = ModelCall()
    play(call, ToolCallDelta(index=0, id="c", name="f"), Finish("tool_calls"))
    assert call.ending(cancelled=True).target is RunStatus.CANCELLED
    long = ModelCall()
    play(long, TextDelta("word"), Finish("length"))
    ending = long.ending(cancelled=False)
    assert ending.target is RunStatus.INCOMPLETE
    assert ending.values == {"incomplete_details": {"reason": "max_completion_tokens"}}


def test_a_failure_carries_its_code_and_message_and_usage_adds_up_across_calls():
    assert failed("rate_limit_exceeded", "slow down").values == {
        "last_error": {"code": "rate_limit_exceeded", "message": "slow down"}
    }
    first = add_usage(None, {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})
    assert add_usage(first, {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}) == {
        "prompt_tokens": 4,
        "completion_tokens": 5,
        "total_tokens": 9,
    }


def test_chunks_without_output_open_nothing():
    call = ModelCall(prompt_tokens=2)
    assert play(call, TextDelta(""), Usage(2, 0), Finish("stop")) == []
    assert call.kind is None and call.content() is None


def test_a_message_streams_the_images_of_the_code_first_each_at_its_index_then_its_text_after_them():
    call = ModelCall()
    effects = call.take(TextDelta("Here "))
    assert next(effects) == Open(StepType.MESSAGE_CREATION)
    call.images = ["file-a", "file-b"]  # what the step's opening found (turn_steps.open_step)
    effects = [*effects, *play(call, TextDelta("it is"))]
    parts = [e.delta["content"] for e in effects]
    assert parts[:2] == [
        [{"index": 0, "type": "image_file", "image_file": {"file_id": "file-a"}}],
        [{"index": 1, "type": "image_file", "image_file": {"file_id": "file-b"}}],
    ]
    assert parts[2:] == [
        [{"index": 2, "type": "text", "text": {"value": "Here ", "annotations": []}}],
        [{"index": 2, "type": "text", "text": {"value": "it is"}}],
    ]
    assert call.content() == [
        {"type": "image_file", "image_file": {"file_id": "file-a"}},
        {"type": "image_file", "image_file": {"file_id": "file-b"}},
        {"type": "text", "text": {"value": "Here it is", "annotations": []}},
    ]


def test_a_redone_message_does_not_stream_its_images_again():
    call = ModelCall()
    effects = call.take(TextDelta("Here "))
    next(effects)
    call.images, call.images_shown, call.streamed = ["file-a"], True, "Here "
    assert [*effects, *play(call, TextDelta("it is"))] == [
        Delta(RunEvent.MESSAGE_DELTA, {"content": [{"index": 1, "type": "text", "text": {"value": "it is"}}]})
    ]


def test_what_postgres_cannot_store_is_streamed_and_stored_as_the_replacement_character():
    call = ModelCall()
    effects = play(call, TextDelta("a\x00b"), TextDelta("\ud800!"), Finish("stop"))
    assert texts(effects) == ["a\ufffdb", "\ufffd!"]
    assert call.content()[0]["text"]["value"] == "a\ufffdb\ufffd!"
    tools = ModelCall()
    play(tools, ToolCallDelta(index=0, id="call_\x00", name="look\x00up", arguments='{"q": "\x00"}'))
    assert tools.function_calls() == [
        {
            "id": "call_\ufffd",
            "type": "function",
            "function": {"name": "look\ufffdup", "arguments": '{"q": "\ufffd"}'},
        }
    ]
    assert failed("server_error", "bad \x00").values["last_error"]["message"] == "bad \ufffd"
