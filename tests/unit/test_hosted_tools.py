"""Server-side tools without a database: how a model's reserved function calls stream as steps, what the
model reads back, what the API shows, how a reply is annotated, and the local model's rules 4 and 5."""

import json

from orchestrator.domain import hosted_tools
from orchestrator.domain.hosted_tools import PartialCode, annotations, public, search_text
from orchestrator.domain.lifecycle import RunStatus
from orchestrator.domain.model import Finish, ModelRequest, TextDelta, ToolCallDelta
from orchestrator.domain.model_call import Delta, ModelCall
from orchestrator.providers.local import LocalModel


def play(call: ModelCall, *chunks) -> list:
    return [effect for chunk in chunks for effect in call.take(chunk)]


def step_entries(effects) -> list[dict]:
    return [
        e.delta["step_details"]["tool_calls"][0] for e in effects if isinstance(e, Delta) and not e.on_message
    ]


def test_code_streams_as_code_interpreter_input_while_the_model_writes_it():
    call = ModelCall(hosted=frozenset({"python"}))
    arguments = json.dumps({"code": 'print("a\\tb")\nx = 1 + 1\nx'})
    pieces = [arguments[i : i + 5] for i in range(0, len(arguments), 5)]
    effects = play(
        call,
        ToolCallDelta(index=0, id="call_c", name="python"),
        *[ToolCallDelta(index=0, arguments=piece) for piece in pieces],
        Finish("tool_calls"),
    )
    entries = step_entries(effects)
    assert entries[0] == {
        "index": 0,
        "id": "call_c",
        "type": "code_interpreter",
        "code_interpreter": {"input": "", "outputs": []},
    }
    streamed = "".join(e["code_interpreter"]["input"] for e in entries[1:])
    assert streamed == 'print("a\\tb")\nx = 1 + 1\nx'
    assert all(e["type"] == "code_interpreter" and "function" not in e for e in entries)
    assert call.ending(cancelled=False).target is RunStatus.IN_PROGRESS  # run the code, call again
    assert call.function_calls() == []


def test_a_partial_escape_waits_for_its_end():
    code = PartialCode()
    assert code.feed('{"code": "a\\') == "a"
    assert code.feed("u00e9") == "é"
    assert code.feed('b"}') == "b"


def test_file_search_streams_an_empty_delta_and_a_function_beside_it_still_needs_outputs():
    call = ModelCall(hosted=frozenset({"file_search"}))
    effects = play(
        call,
        ToolCallDelta(index=0, id="call_s", name="file_search", arguments='{"queries": ["x"]}'),
        ToolCallDelta(index=1, id="call_f", name="lookup", arguments="{}"),
        Finish("tool_calls"),
    )
    entries = step_entries(effects)
    assert entries[0] == {"index": 0, "id": "call_s", "type": "file_search", "file_search": {}}
    assert entries[1]["type"] == "function" and entries[1]["index"] == 1
    ending = call.ending(cancelled=False)
    assert ending.target is RunStatus.REQUIRES_ACTION
    assert [c["id"] for c in ending.values["required_action"]["submit_tool_outputs"]["tool_calls"]] == [
        "call_f"
    ]
    done = {0: {"id": "call_s", "type": "file_search", "file_search": {"results": []}}}
    assert [c["id"] for c in call.tool_calls(done)] == ["call_s", "call_f"]


def test_a_reserved_name_not_offered_is_an_ordinary_function():
    call = ModelCall()
    play(call, ToolCallDelta(index=0, id="call_p", name="python", arguments="{}"), Finish("tool_calls"))
    assert call.ending(cancelled=False).target is RunStatus.REQUIRES_ACTION


def test_the_api_hides_engine_keys_and_result_content_unless_included():
    details = {
        "type": "tool_calls",
        "tool_calls": [
            {
                "id": "call_s",
                "type": "file_search",
                "file_search": {
                    "results": [{"file_id": "file-1", "content": [{"type": "text", "text": "t"}]}]
                },
                "_model": {"name": "file_search", "arguments": "{}", "output": "…"},
            }
        ],
    }
    hidden = public(details)["tool_calls"][0]
    assert "_model" not in hidden and hidden["file_search"]["results"] == [{"file_id": "file-1"}]
    shown = public(details, with_content=True)["tool_calls"][0]
    assert shown["file_search"]["results"][0]["content"] == [{"type": "text", "text": "t"}]


def test_markers_and_sandbox_paths_become_annotations_over_their_own_text():
    text = "Revenue grew 4% 【2:0†report.md】 and the chart is at sandbox:/mnt/data/chart.png. 【2:7†x】"
    found = annotations(text, {(2, 0): "file-r"}, {"chart.png": "file-c"})
    assert [a["type"] for a in found] == ["file_citation", "file_path"]
    for item in found:
        assert text[item["start_index"] : item["end_index"]] == item["text"]
    assert found[0]["file_citation"] == {"file_id": "file-r"}
    assert found[1]["text"] == "sandbox:/mnt/data/chart.png" and found[1]["file_path"] == {
        "file_id": "file-c"
    }


def test_a_function_tool_of_a_reserved_name_wins_over_the_server_side_tool():
    tools = [{"type": "code_interpreter"}, {"type": "function", "function": {"name": "python"}}]
    assert hosted_tools.offered(tools, has_stores=True) == []
    assert hosted_tools.offered([{"type": "file_search"}], has_stores=False) == []
    assert hosted_tools.offered([{"type": "file_search"}], has_stores=True) == ["file_search"]


def _request(messages, *hosted, tool_choice="auto"):
    tools = [hosted_tools.FUNCTIONS[name] for name in hosted]
    return ModelRequest("local", messages, tools=tools, tool_choice=tool_choice, hosted=tuple(hosted))


def _chunks(request):
    return list(LocalModel().stream(request))


def test_the_local_model_searches_first_then_quotes_the_top_result_with_its_marker():
    user = {"role": "user", "content": "what about the moon?"}
    calls = [c for c in _chunks(_request([user], "file_search")) if isinstance(c, ToolCallDelta)]
    assert calls[0].name == "file_search"
    assert json.loads("".join(c.arguments for c in calls)) == {"queries": ["what about the moon?"]}

    results = [{"file_name": "moon.md", "content": [{"type": "text", "text": "The moon is made of rock."}]}]
    asked = {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
             "function": {"name": "file_search", "arguments": "{}"}}]}  # fmt: skip
    answer = {"role": "tool", "tool_call_id": "c", "content": search_text(3, results)}
    reply = "".join(
        c.text for c in _chunks(_request([user, asked, answer], "file_search")) if isinstance(c, TextDelta)
    )
    assert "The moon is made of rock." in reply and reply.endswith("【3:0†moon.md】")
    assert _chunks(_request([user], "file_search", tool_choice="none"))[0].__class__ is not ToolCallDelta


def test_the_local_model_runs_a_fenced_python_block_and_repeats_its_output():
    user = {"role": "user", "content": "Please run:\n```python\nprint(6 * 7)\n```\nthanks"}
    calls = [c for c in _chunks(_request([user], "python")) if isinstance(c, ToolCallDelta)]
    assert json.loads("".join(c.arguments for c in calls)) == {"code": "print(6 * 7)\n"}
    plain = {"role": "user", "content": "no code here"}
    assert not any(isinstance(c, ToolCallDelta) for c in _chunks(_request([plain], "python")))
