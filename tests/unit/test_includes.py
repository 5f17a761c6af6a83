"""`include[]`: the parts of an item shown only when asked for are left out otherwise; the stored item is
never changed."""

from orchestrator.domain.includes import shown

SEARCH = {"id": "fs_1", "type": "file_search_call", "status": "completed", "queries": ["q"], "results": [{}]}
CODE = {"id": "ci_1", "type": "code_interpreter_call", "container_id": "c", "outputs": [{"type": "logs"}]}
REASONING = {"id": "rs_1", "type": "reasoning", "summary": [], "encrypted_content": "secret"}
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "status": "completed",
    "content": [{"type": "output_text", "text": "hi", "annotations": [], "logprobs": [{"token": "hi"}]}],
}


def test_without_include_results_outputs_encrypted_content_and_logprobs_are_left_out():
    assert shown(SEARCH, ())["results"] is None
    assert shown(CODE, ())["outputs"] is None
    assert "encrypted_content" not in shown(REASONING, ())
    assert "logprobs" not in shown(MESSAGE, ())["content"][0]
    assert SEARCH["results"] == [{}] and MESSAGE["content"][0]["logprobs"]  # the stored items are whole


def test_with_include_each_part_is_shown_as_stored():
    include = {
        "file_search_call.results",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
    }
    for item in (SEARCH, CODE, REASONING, MESSAGE):
        assert shown(item, include) == item


def test_items_without_such_parts_are_shown_unchanged():
    plain = {"id": "msg_2", "type": "message", "role": "user", "status": "completed", "content": []}
    call = {"id": "fc_1", "type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    assert shown(plain, ()) is plain and shown(call, ()) is call
