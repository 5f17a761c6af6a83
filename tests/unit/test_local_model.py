import json

from orchestrator.domain import hosted_tools
from orchestrator.domain.model import Finish, ModelRequest, TextDelta, ToolCallDelta, Usage
from orchestrator.providers.local import LocalModel, first_json_object, pick_hosted, pick_tools


def fn(name):
    return {"type": "function", "function": {"name": name}}


def request(text, **options):
    return ModelRequest(model="local", messages=[{"role": "user", "content": text}], **options)


def play(req):
    return list(LocalModel().stream(req))


def test_a_plain_message_is_echoed_verbatim_word_by_word():
    chunks = play(request("hello there, world"))
    text = "".join(c.text for c in chunks if isinstance(c, TextDelta))
    assert "hello there, world" in text
    assert sum(isinstance(c, TextDelta) for c in chunks) > 1
    assert chunks[-1] == Finish("stop")
    usage = next(c for c in chunks if isinstance(c, Usage))
    assert usage.completion_tokens > 0


def test_every_tool_named_as_a_whole_word_is_called_with_the_first_json_object():
    req = request(
        'please get_weather and get_time {"city": "Oslo"} {"x": 1}',
        tools=[fn("get_weather"), fn("get_time"), fn("weather")],
    )
    chunks = play(req)
    calls = {}
    for c in chunks:
        if isinstance(c, ToolCallDelta):
            calls.setdefault(c.index, {"name": c.name, "arguments": ""})
            calls[c.index]["arguments"] += c.arguments
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Oslo"}
    assert chunks[-1] == Finish("tool_calls")


def test_tool_choice_rules_pick_none_named_required_and_single():
    tools = [fn("alpha"), fn("beta")]
    assert pick_tools(request("alpha beta", tools=tools, tool_choice="none"), "alpha beta") == []
    named = {"type": "function", "function": {"name": "beta"}}
    assert pick_tools(request("nothing", tools=tools, tool_choice=named), "nothing") == ["beta"]
    assert pick_tools(request("nothing", tools=tools, tool_choice="required"), "nothing") == ["alpha"]
    assert pick_tools(request("nothing", tools=tools), "nothing") == []
    single = request("alpha beta", tools=tools, parallel_tool_calls=False)
    assert pick_tools(single, "alpha beta") == ["alpha"]


def test_the_turn_after_tool_outputs_contains_every_output_verbatim():
    messages = [
        {"role": "user", "content": "alpha"},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "call_1", "content": "OUT-ONE"},
        {"role": "tool", "tool_call_id": "call_2", "content": "OUT two"},
    ]
    chunks = play(ModelRequest(model="local", messages=messages, tools=[fn("alpha")]))
    text = "".join(c.text for c in chunks if isinstance(c, TextDelta))
    assert "OUT-ONE" in text and "OUT two" in text


def test_a_completion_budget_cuts_the_reply_with_finish_length():
    chunks = play(request("one two three four five six seven", max_completion_tokens=3))
    assert chunks[-1] == Finish("length")
    assert next(c for c in chunks if isinstance(c, Usage)).completion_tokens <= 3


def test_first_json_object_skips_non_objects_and_broken_json():
    assert first_json_object('x {broken [1] {"a": {"b": 2}} {"c": 3}') == '{"a": {"b": 2}}'
    assert first_json_object("no json") == "{}"


def test_the_first_token_pause_comes_before_the_first_chunk_of_text_and_of_tool_calls():
    import time

    model = LocalModel(first_token_ms=150)
    for req in (request("hello"), request("get_weather now", tools=[fn("get_weather")])):
        started = time.monotonic()
        stream = model.stream(req)
        first = next(stream)
        assert time.monotonic() - started >= 0.15
        assert isinstance(first, TextDelta | ToolCallDelta)
        started = time.monotonic()
        rest = list(stream)
        assert time.monotonic() - started < 0.1  # only the first chunk waits
        assert rest[-1] in (Finish("stop"), Finish("tool_calls"))


BOTH = ("file_search", "python")
BLOCK = "compute this:\n```python\nprint(1)\n```"


def test_a_forced_code_interpreter_runs_the_code_block_and_never_searches():
    forced = {"type": "function", "function": {"name": "python"}}  # how the engine forces the tool type
    assert pick_hosted(request(BLOCK, hosted=BOTH, tool_choice=forced), BLOCK) == (
        "python",
        {"code": "print(1)\n"},
    )
    assert pick_hosted(request(BLOCK, hosted=BOTH), BLOCK)[0] == "file_search"  # unforced: rule 4 first


def test_a_forced_search_or_function_is_the_only_call_made():
    search = {"type": "function", "function": {"name": "file_search"}}
    assert pick_hosted(request(BLOCK, hosted=BOTH, tool_choice=search), BLOCK)[0] == "file_search"
    weather = {"type": "function", "function": {"name": "get_weather"}}
    req = request(BLOCK, hosted=BOTH, tool_choice=weather, tools=[fn("get_weather")])
    assert pick_hosted(req, BLOCK) is None
    assert pick_tools(req, BLOCK) == ["get_weather"]


def reply_after_code(output: str) -> str:
    messages = [
        {"role": "user", "content": BLOCK},
        {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "python"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": output},
    ]
    chunks = play(ModelRequest(model="local", messages=messages, hosted=("python",)))
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def test_after_code_that_ran_the_reply_gives_its_output_and_after_code_that_could_not_run_only_why():
    assert reply_after_code("1") == "The code ran. Output:\n1"
    failed = hosted_tools.not_run_text("no sandbox here")
    assert reply_after_code(failed) == "The code could not be run: no sandbox here"
