"""Streaming through the SDK's helpers and on the wire, against real processes."""

from __future__ import annotations

import json

import httpx2 as httpx
import pytest
from openai import AssistantEventHandler, AsyncAzureOpenAI, AsyncOpenAI, AzureOpenAI

from tests.conftest import on_both_targets

pytestmark = [pytest.mark.e2e, on_both_targets]

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.fixture
def assistant(client):
    return client.beta.assistants.create(model="local-stream", tools=[WEATHER])


class Recorder(AssistantEventHandler):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []
        self.text = ""
        self.tool_calls = []

    def on_event(self, event):
        self.names.append(event.event)

    def on_text_delta(self, delta, snapshot):
        self.text += delta.value or ""

    def on_tool_call_created(self, tool_call):
        self.tool_calls.append(tool_call)


def test_a_streamed_text_run_follows_the_contracts_event_order(client, assistant):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "stream me some words please"}])
    recorder = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=recorder
    ) as stream:
        stream.until_done()
        final_run = stream.get_final_run()
        final_messages = stream.get_final_messages()
    deltas = recorder.names.count("thread.message.delta")
    assert deltas > 1
    collapsed = [n for n in recorder.names if n != "thread.message.delta"]
    assert collapsed == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    stored = client.beta.threads.messages.retrieve(final_messages[0].id, thread_id=thread.id)
    assert recorder.text == stored.content[0].text.value
    assert "stream me some words please" in recorder.text
    assert final_run.status == "completed"
    assert (
        final_run.model_dump()
        == client.beta.threads.runs.retrieve(final_run.id, thread_id=thread.id).model_dump()
    )


def test_tool_outputs_submitted_from_on_event_resume_the_stream(client, assistant):
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": 'get_weather {"city": "Paris"}'}]
    )
    outcome = {}

    class Handler(AssistantEventHandler):
        def on_event(self, event):
            if event.event == "thread.run.requires_action":
                run = event.data
                call = run.required_action.submit_tool_outputs.tool_calls[0]
                outcome["arguments"] = call.function.arguments
                # Submitting while the first stream is still open, as OpenAI's docs do.
                with client.beta.threads.runs.submit_tool_outputs_stream(
                    thread_id=run.thread_id,
                    run_id=run.id,
                    tool_outputs=[{"tool_call_id": call.id, "output": "RAINY-12C"}],
                    event_handler=Second(),
                ) as second:
                    second.until_done()
                    outcome["final"] = second.get_final_run()

    class Second(AssistantEventHandler):
        def __init__(self):
            super().__init__()
            self.names = []
            outcome["second"] = self

        def on_event(self, event):
            self.names.append(event.event)

    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=Handler()
    ) as stream:
        stream.until_done()
        first_steps = stream.get_final_run_steps()
    assert json.loads(outcome["arguments"]) == {"city": "Paris"}
    assert first_steps[0].step_details.tool_calls[0].function.arguments == outcome["arguments"]
    assert outcome["final"].status == "completed"
    names = outcome["second"].names
    assert names[:3] == ["thread.run.step.completed", "thread.run.queued", "thread.run.in_progress"]
    assert names[-1] == "thread.run.completed"
    text = client.beta.threads.messages.list(thread.id).data[0].content[0].text.value
    assert "RAINY-12C" in text


def test_create_and_run_stream_starts_with_thread_created_and_text_deltas_flow(client, assistant):
    with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "hello stream"}]}
    ) as stream:
        pieces = list(stream.text_deltas)
        run = stream.get_final_run()
    assert "hello stream" in "".join(pieces)
    assert run.status == "completed"


def test_the_wire_format_has_ids_names_single_line_data_and_done(server, client, assistant):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "wire check"}])
    headers = {"Authorization": f"Bearer {server.key}", "OpenAI-Beta": "assistants=v2"}
    with httpx.stream(
        "POST",
        f"{server.base}/v1/threads/{thread.id}/runs",
        headers=headers,
        json={"assistant_id": assistant.id, "stream": True},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    frames = [f for f in body.split("\n\n") if f.strip()]
    assert frames[-1] == "event: done\ndata: [DONE]"
    seqs = []
    for frame_text in frames[:-1]:
        lines = frame_text.split("\n")
        assert (
            lines[0].startswith("id: ") and lines[1].startswith("event: ") and lines[2].startswith("data: ")
        )
        assert len(lines) == 3
        json.loads(lines[2][6:])
        seqs.append(int(lines[0][4:]))
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_a_late_watcher_and_a_resumed_watcher_see_every_event_once(server, client, assistant):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "late watcher words"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    headers = {"Authorization": f"Bearer {server.key}"}
    url = f"{server.base}/v1/threads/{thread.id}/runs/{run.id}/events"
    full = _frames(httpx.get(url, headers=headers, timeout=30).text)
    assert full[0][1] == "thread.run.created" and full[-1][1] == "thread.run.completed"
    middle = full[len(full) // 2][0]
    resumed = _frames(httpx.get(url, headers={**headers, "Last-Event-ID": str(middle)}, timeout=30).text)
    assert [f for f in full if f[0] > middle] == resumed
    via_query = _frames(httpx.get(url + f"?after={middle}", headers=headers, timeout=30).text)
    assert via_query == resumed


def _frames(body: str) -> list[tuple[int, str, str]]:
    frames = []
    for chunk in body.split("\n\n"):
        lines = dict(
            line.split(": ", 1) for line in chunk.split("\n") if ": " in line and not line.startswith(":")
        )
        if "id" in lines:
            frames.append((int(lines["id"]), lines["event"], lines["data"]))
    return frames


@pytest.mark.parametrize("flavour", ["openai", "azure"])
def test_the_async_client_streams_too(server, flavour):
    import asyncio

    async def main():
        if flavour == "openai":
            aclient = AsyncOpenAI(base_url=server.base + "/v1", api_key=server.key, max_retries=0)
        else:
            aclient = AsyncAzureOpenAI(
                azure_endpoint=server.base,
                api_key=server.key,
                api_version="2024-05-01-preview",
                max_retries=0,
            )
        async with aclient:
            assistant = await aclient.beta.assistants.create(model="local")
            thread = await aclient.beta.threads.create(messages=[{"role": "user", "content": "async hello"}])
            async with aclient.beta.threads.runs.stream(
                thread_id=thread.id, assistant_id=assistant.id
            ) as stream:
                text = "".join([piece async for piece in stream.text_deltas])
                run = await stream.get_final_run()
        return text, run

    text, run = asyncio.run(main())
    assert "async hello" in text and run.status == "completed"


def test_an_azure_client_given_a_deployment_base_url_runs_and_streams_a_tool_call(server):
    """Only a client given base_url=".../openai/deployments/{name}" sends assistants calls under it."""
    client = AzureOpenAI(
        base_url=server.base + "/openai/deployments/gpt-4o-prod",
        api_key=server.key,
        api_version="2024-05-01-preview",
        max_retries=0,
    )
    sent: list[str] = []
    client._client.event_hooks["request"].append(lambda request: sent.append(request.url.path))
    with client:
        assistant = client.beta.assistants.create(model="local-stream", tools=[WEATHER])
        thread = client.beta.threads.create(
            messages=[{"role": "user", "content": 'get_weather {"city": "Oslo"}'}]
        )
        with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
            stream.until_done()
            run = stream.get_final_run()
        assert run.status == "requires_action"
        call = run.required_action.submit_tool_outputs.tool_calls[0]
        assert json.loads(call.function.arguments) == {"city": "Oslo"}
        with client.beta.threads.runs.submit_tool_outputs_stream(
            thread_id=thread.id, run_id=run.id, tool_outputs=[{"tool_call_id": call.id, "output": "SNOW-3C"}]
        ) as stream:
            text = "".join(stream.text_deltas)
            final = stream.get_final_run()
        assert final.status == "completed" and "SNOW-3C" in text
        assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == "completed"
    assert sent and all(path.startswith("/openai/deployments/gpt-4o-prod/") for path in sent)
