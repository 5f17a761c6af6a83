"""The model's view of a run: instructions, truncated thread messages, this run's tool rounds."""

from __future__ import annotations

from orchestrator.db import models
from orchestrator.domain import hosted_tools
from orchestrator.engine.prompt import compose, fit, keep_last, thread_message, tool_round
from orchestrator.providers import tokens

WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


def run(**fields) -> models.Run:
    defaults = dict(
        model="gpt-4o",
        instructions="You are terse.",
        additional_instructions=None,
        tools=[],
        truncation_strategy={"type": "auto", "last_messages": None},
        tool_choice="auto",
        parallel_tool_calls=True,
        response_format=None,
        temperature=None,
        top_p=None,
        max_prompt_tokens=None,
        max_completion_tokens=None,
        usage=None,
    )
    return models.Run(**{**defaults, **fields})


def thread(*texts: str) -> list[tuple[int, dict]]:
    roles = ("user", "assistant")
    return [(10 * (i + 1), {"role": roles[i % 2], "content": text}) for i, text in enumerate(texts)]


def contents(prompt) -> list:
    return [m["content"] for m in prompt.request.messages]


def round_at(at: int, output: str | None = "sunny") -> list[tuple[int, dict]]:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": "{}", "output": output},
    }
    return tool_round(at, {"type": "tool_calls", "tool_calls": [call]})


def cost(run_: models.Run, messages: list[dict]) -> int:
    return tokens.count_messages(messages, run_.model)


def test_instructions_and_additional_instructions_make_the_system_message():
    prompt = compose(run(additional_instructions="Answer in French."), thread("hi"), [])
    assert prompt.request.messages[0] == {"role": "system", "content": "You are terse.\n\nAnswer in French."}


def test_no_instructions_means_no_system_message():
    prompt = compose(run(instructions=""), thread("hi"), [])
    assert prompt.request.messages == [{"role": "user", "content": "hi"}]


def test_the_run_settings_reach_the_request():
    fmt = {"type": "json_object"}
    prompt = compose(
        run(tools=[WEATHER, {"type": "code_interpreter"}], tool_choice="required", parallel_tool_calls=False,
            response_format=fmt, temperature=0.3, top_p=0.9, max_completion_tokens=500),
        thread("hi"),
        [],
    )  # fmt: skip
    request = prompt.request
    # code_interpreter is offered as its reserved function; file_search would need a store.
    assert request.tools == [WEATHER, hosted_tools.FUNCTIONS["python"]]
    assert request.hosted == ("python",)
    assert (request.tool_choice, request.parallel_tool_calls, request.response_format) == (
        "required",
        False,
        fmt,
    )
    assert (request.temperature, request.top_p, request.max_completion_tokens) == (0.3, 0.9, 500)


def test_tool_rounds_follow_the_thread_as_an_assistant_call_then_its_result():
    prompt = compose(run(), thread("weather?"), round_at(100))
    assert [m["role"] for m in prompt.request.messages] == ["system", "user", "assistant", "tool"]
    assert prompt.request.messages[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    assert prompt.request.messages[-2]["tool_calls"][0]["function"] == {"name": "weather", "arguments": "{}"}


def test_a_missing_tool_output_is_sent_as_empty_text():
    assert round_at(1, output=None)[1][1]["content"] == ""


def test_last_messages_keeps_the_most_recent_thread_messages_and_every_tool_round():
    strategy = {"type": "last_messages", "last_messages": 2}
    prompt = compose(run(truncation_strategy=strategy), thread("a", "b", "c", "d"), round_at(100))
    assert contents(prompt)[1:3] == ["c", "d"]
    assert [m["role"] for m in prompt.request.messages[3:]] == ["assistant", "tool"]


def test_auto_and_absent_strategies_keep_everything():
    assert keep_last(thread("a", "b"), {"type": "auto", "last_messages": None}) == thread("a", "b")
    assert keep_last(thread("a", "b"), None) == thread("a", "b")


def test_max_prompt_tokens_drops_the_oldest_messages_until_the_prompt_fits():
    messages = thread("one " * 40, "two " * 40, "three " * 40, "four")
    system = [{"role": "system", "content": "You are terse."}]
    budget = cost(run(), system + [m for _at, m in messages[2:]])
    prompt = compose(run(max_prompt_tokens=budget), messages, [])
    assert contents(prompt)[1:] == ["three " * 40, "four"]
    assert prompt.request.prompt_tokens == budget


def test_a_prompt_whose_latest_message_cannot_fit_ends_with_max_prompt_tokens():
    prompt = compose(run(max_prompt_tokens=20), thread("old", "word " * 100), [])
    assert prompt.request is None and prompt.incomplete_reason == "max_prompt_tokens"


def test_tool_rounds_are_never_dropped_to_fit():
    rounds = round_at(100, output="result " * 100)
    prompt = compose(run(max_prompt_tokens=50), thread("hi"), rounds)
    assert prompt.incomplete_reason == "max_prompt_tokens"


def test_the_budget_is_for_the_whole_run_so_earlier_turns_use_it_up():
    messages = thread("question")
    fits = compose(run(max_prompt_tokens=300), messages, [])
    assert fits.request is not None
    used = 300 - fits.request.prompt_tokens + 1
    spent = compose(
        run(max_prompt_tokens=300, usage={"prompt_tokens": used, "completion_tokens": 0}), messages, []
    )
    assert spent.incomplete_reason == "max_prompt_tokens"


def test_function_definitions_count_toward_the_prompt_and_its_budget():
    plain = compose(run(), thread("hi"), [])
    with_tools = compose(run(tools=[WEATHER]), thread("hi"), [])
    overhead = tokens.count_tools([WEATHER], "gpt-4o")
    assert with_tools.request.prompt_tokens == plain.request.prompt_tokens + overhead
    assert (
        compose(run(tools=[WEATHER], max_prompt_tokens=plain.request.prompt_tokens), thread("hi"), []).request
        is None
    )


def test_fit_keeps_an_empty_thread_when_the_fixed_part_fits():
    assert fit([], [{"role": "system", "content": "x"}], 100) == []
    assert fit([], [{"role": "system", "content": "x " * 200}], 100) is None


def test_stored_text_blocks_become_the_message_text():
    blocks = [
        {"type": "text", "text": {"value": "a", "annotations": []}},
        {"type": "text", "text": {"value": "b"}},
    ]
    assert thread_message("user", blocks) == {"role": "user", "content": "a\nb"}


def test_image_urls_become_image_parts_and_image_files_are_left_out():
    blocks = [
        {"type": "text", "text": {"value": "what is this?", "annotations": []}},
        {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
        {"type": "image_file", "image_file": {"file_id": "file_1"}},
    ]
    assert thread_message("user", blocks) == {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
        ],
    }


def test_an_empty_message_is_left_out():
    assert thread_message("assistant", []) is None


def test_a_forced_server_side_tool_is_forced_as_its_function_once_then_the_model_is_free():
    forced = run(tools=[{"type": "code_interpreter"}], tool_choice={"type": "code_interpreter"})
    first = compose(forced, thread("compute it"), []).request
    assert first.tool_choice == {"type": "function", "function": {"name": "python"}}
    calls = {"type": "tool_calls", "tool_calls": [{"id": "call_1", "type": "code_interpreter",
             "code_interpreter": {"input": "1", "outputs": []},
             "_model": {"name": "python", "arguments": '{"code": "1"}', "output": "1"}}]}  # fmt: skip
    after = compose(forced, thread("compute it"), tool_round(10**18, calls)).request
    assert after.tool_choice == "auto"
    assert after.messages[-2]["tool_calls"][0]["function"] == {"name": "python", "arguments": '{"code": "1"}'}
    assert after.messages[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "1"}
    # file_search is forced only where there is a store to search.
    searching = run(tools=[{"type": "file_search"}], tool_choice={"type": "file_search"})
    assert compose(searching, thread("x"), []).request.tool_choice == "auto"
    assert (
        compose(searching, thread("x"), [], has_stores=True).request.tool_choice["function"]["name"]
        == "file_search"
    )
