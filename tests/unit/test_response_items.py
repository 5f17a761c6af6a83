"""Responses items: what a client sends, made whole; and the chat messages a model reads from them."""

import pytest

from orchestrator.domain.errors import InvalidRequest
from orchestrator.domain.response_items import latest_user_text, normalize, to_messages


def test_a_string_input_is_one_user_message_with_an_id():
    [item] = normalize("hello")
    assert item["id"].startswith("msg_") and item["status"] == "completed"
    assert item | {"id": "x"} == {
        "id": "x",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_text", "text": "hello"}],
    }


def test_an_easy_assistant_message_gets_output_text_and_ids_given_are_kept():
    [item] = normalize([{"role": "assistant", "content": "hi", "id": "msg_mine"}])
    assert item["id"] == "msg_mine"
    assert item["content"] == [{"type": "output_text", "text": "hi", "annotations": []}]


@pytest.mark.parametrize(
    ("given", "param"),
    [
        (42, "input"),
        ([{"role": "robot", "content": "x"}], "input[0].role"),
        ([{"role": "user", "content": [{"type": "output_text", "text": "x"}]}], "input[0].content[0].type"),
        ([{"type": "function_call", "name": "f", "arguments": "{}"}], "input[0].call_id"),
        ([{"type": "function_call_output", "call_id": "c"}], "input[0].output"),
        ([{"type": "teleport"}], "input[0].type"),
        ([{"role": "user", "content": "x", "id": "m" * 65}], "input[0].id"),
        ([{"role": "user", "content": "x", "id": "msg/1"}], "input[0].id"),
        ([{"type": "item_reference", "id": "a b"}], "input[0].id"),
        ([{"role": "user", "content": "x", "status": "done"}], "input[0].status"),
        ([{"role": "user", "content": [{"type": "input_text", "text": 5}]}], "input[0].content[0].text"),
        ([{"role": "assistant", "content": [{"type": "refusal"}]}], "input[0].content[0].refusal"),
    ],
)
def test_bad_items_are_refused_naming_the_parameter(given, param):
    with pytest.raises(InvalidRequest) as error:
        normalize(given)
    assert error.value.param == param


def test_calls_and_their_outputs_become_an_assistant_tool_call_message_and_tool_messages():
    items = normalize(
        [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "weather in Oslo and Rome?"},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city": "Oslo"}'},
            {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": '{"city": "Rome"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2", "output": "rain"},
        ]
    )
    messages = to_messages(items)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["c1", "c2"]
    assert messages[3] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}


def test_a_server_side_call_reads_as_its_reserved_function_and_its_result():
    messages = to_messages(
        [
            {
                "type": "code_interpreter_call",
                "id": "ci_1",
                "code": "print(1)",
                "outputs": [{"type": "logs", "logs": "1"}],
            }
        ]
    )
    assert messages[0]["tool_calls"][0]["function"] == {"name": "python", "arguments": '{"code": "print(1)"}'}
    assert messages[1] == {"role": "tool", "tool_call_id": "ci_1", "content": "1"}


def test_the_latest_user_text_joins_its_text_parts():
    items = normalize(
        [
            {"role": "user", "content": "old"},
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}],
            },
            {"role": "assistant", "content": "reply"},
        ]
    )
    assert latest_user_text(items) == "a b"
