"""Every kind of run stream, read with the SDK's own helpers: the scenarios of the quiet-stream tests.

Only the `openai` package is imported, in ways SDK 1.x and 3.x share, so the same scenarios also run under
another interpreter that has SDK 1.x installed:

    python tests/support/quiet_scenarios.py BASE_URL API_KEY   # prints one JSON object per scenario

Each scenario follows a tool call through `runs.stream`, submits the output with
`submit_tool_outputs_stream`, then attaches to a run created without `stream` through the SDK's own
`Stream` class, and reports what it read.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading

import openai
from openai import AssistantEventHandler, AsyncAssistantEventHandler, AsyncStream, Stream
from openai.types.beta import AssistantStreamEvent

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
API_VERSION = "2024-05-01-preview"
SCENARIOS = [("openai", "sync"), ("azure", "sync"), ("openai", "async"), ("azure", "async")]


def client_for(flavour: str, mode: str, base: str, key: str):
    options = {"api_key": key, "max_retries": 0, "timeout": 60}
    if flavour == "openai":
        kind = openai.OpenAI if mode == "sync" else openai.AsyncOpenAI
        return kind(base_url=base + "/v1", **options)
    kind = openai.AzureOpenAI if mode == "sync" else openai.AsyncAzureOpenAI
    return kind(azure_endpoint=base, api_version=API_VERSION, **options)


class _Names(AssistantEventHandler):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def on_event(self, event):
        self.names.append(event.event)


class _AsyncNames(AsyncAssistantEventHandler):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    async def on_event(self, event):
        self.names.append(event.event)


def _attach_options() -> dict:
    return {
        "cast_to": AssistantStreamEvent,
        "stream": True,
        "options": {"headers": {"OpenAI-Beta": "assistants=v2"}},
    }


def sync_scenario(client) -> dict:
    assistant = client.beta.assistants.create(model="local", tools=[WEATHER])
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": 'get_weather {"city": "Oslo"}'}]
    )
    first = _Names()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=first
    ) as stream:
        stream.until_done()
        run = stream.current_run
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    second = _Names()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}],
        event_handler=second,
    ) as stream:
        stream.until_done()
        final = stream.get_final_run().status
        reply = stream.get_final_messages()[0].content[0].text.value
    later = client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "slowly"}]}
    )
    attached = client.get(
        f"/threads/{later.thread_id}/runs/{later.id}/events",
        stream_cls=Stream[AssistantStreamEvent],
        **_attach_options(),
    )
    return _report(run.status, first.names, final, reply, second.names, [e.event for e in attached])


async def async_scenario(client) -> dict:
    assistant = await client.beta.assistants.create(model="local", tools=[WEATHER])
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": 'get_weather {"city": "Lima"}'}]
    )
    first = _AsyncNames()
    async with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=first
    ) as stream:
        await stream.until_done()
        run = stream.current_run
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    second = _AsyncNames()
    async with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}],
        event_handler=second,
    ) as stream:
        await stream.until_done()
        final = (await stream.get_final_run()).status
        reply = (await stream.get_final_messages())[0].content[0].text.value
    later = await client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "slowly"}]}
    )
    attached = await client.get(
        f"/threads/{later.thread_id}/runs/{later.id}/events",
        stream_cls=AsyncStream[AssistantStreamEvent],
        **_attach_options(),
    )
    names = [event.event async for event in attached]
    await client.close()
    return _report(run.status, first.names, final, reply, second.names, names)


def _report(first_status, first, final_status, reply, second, attached) -> dict:
    return {
        "first_status": first_status,
        "first_last_event": first[-1] if first else None,
        "final_status": final_status,
        "reply": reply,
        "second_deltas": second.count("thread.message.delta"),
        "second_last_event": second[-1] if second else None,
        "attached_first": attached[:2],
        "attached_last": attached[-1] if attached else None,
    }


def run_all(base: str, key: str) -> dict[str, dict]:
    """Every scenario at once (they spend their time waiting); a failure is reported, not raised."""
    results: dict[str, dict] = {}

    def play(flavour: str, mode: str) -> None:
        name = f"{flavour}-{mode}"
        try:
            client = client_for(flavour, mode, base, key)
            if mode == "sync":
                results[name] = sync_scenario(client)
                client.close()
            else:
                results[name] = asyncio.run(async_scenario(client))
        except Exception as error:  # reported to the test, which shows it
            results[name] = {"error": f"{type(error).__name__}: {error}"}

    threads = [threading.Thread(target=play, args=scenario) for scenario in SCENARIOS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


if __name__ == "__main__":
    print(json.dumps({"sdk": openai.__version__, "results": run_all(sys.argv[1], sys.argv[2])}))
