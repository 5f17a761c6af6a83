"""The function-tool round trip through the SDK's poll helpers, as the tests of every deployment drive it:
ask (the run stops at requires_action), then answer (submit the outputs, poll to the end)."""

from __future__ import annotations


def ask(client, assistant_id: str, content: str):
    """A new thread with one user message, run until it waits for tool outputs: (thread, run)."""
    thread = client.beta.threads.create(messages=[{"role": "user", "content": content}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id, poll_interval_ms=50
    )
    assert run.status == "requires_action", run.last_error
    return thread, run


def calls(run) -> list[tuple[str, str]]:
    """The (name, arguments) of each tool call a waiting run asks for."""
    return [
        (c.function.name, c.function.arguments) for c in run.required_action.submit_tool_outputs.tool_calls
    ]


def answer(client, run, *outputs: str):
    """Submit one output per asked call, in order, and poll the run to its end."""
    asked = run.required_action.submit_tool_outputs.tool_calls
    return client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=run.thread_id,
        tool_outputs=[{"tool_call_id": c.id, "output": o} for c, o in zip(asked, outputs, strict=True)],
        poll_interval_ms=50,
    )
