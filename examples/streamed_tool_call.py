"""A streamed run with a tool call, through the official openai SDK, unchanged.

Start the server (`orchestrator dev` prints a key), then:

    python examples/streamed_tool_call.py --base-url http://127.0.0.1:8000 --api-key sk-…
    python examples/streamed_tool_call.py --client azure --base-url http://127.0.0.1:8000 --api-key sk-…

The base URL and key can also come from ORCHESTRATOR_URL and ORCHESTRATOR_API_KEY.

The event handler submits the tool outputs from `on_event` while the first stream is still open, as
OpenAI's Assistants streaming guide does; the second stream carries the answer. With the `local` model the
run calls `get_weather` because the message names it, and the answer quotes the tool's output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from openai import AssistantEventHandler, AzureOpenAI, OpenAI

# The SDK marks the Assistants API deprecated (OpenAI retired its own); this server keeps it working.
warnings.filterwarnings("ignore", category=DeprecationWarning)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
QUESTION = 'What is the weather like? Use get_weather with {"city": "Oslo"}.'


def get_weather(city: str) -> str:
    """The tool itself: runs here, in the client, as with OpenAI."""
    return f"{city}: sunny, 21 degrees"


class Handler(AssistantEventHandler):
    def __init__(self, client: OpenAI):
        super().__init__()
        self.client = client

    def on_event(self, event) -> None:
        if event.event == "thread.run.requires_action":
            self.submit(event.data)
        elif event.event in ("thread.run.completed", "thread.run.failed", "thread.run.cancelled"):
            print(f"\nrun {event.data.id} {event.data.status}")

    def on_text_created(self, text) -> None:
        print("assistant: ", end="", flush=True)

    def on_text_delta(self, delta, snapshot) -> None:
        print(delta.value or "", end="", flush=True)

    def submit(self, run) -> None:
        outputs = []
        for call in run.required_action.submit_tool_outputs.tool_calls:
            arguments = json.loads(call.function.arguments or "{}")
            output = get_weather(**arguments)
            print(f"tool call {call.function.name}({call.function.arguments}) -> {output}")
            outputs.append({"tool_call_id": call.id, "output": output})
        with self.client.beta.threads.runs.submit_tool_outputs_stream(
            thread_id=run.thread_id, run_id=run.id, tool_outputs=outputs, event_handler=Handler(self.client)
        ) as stream:
            stream.until_done()


def make_client(flavour: str, base_url: str, api_key: str) -> OpenAI:
    if flavour == "azure":
        return AzureOpenAI(azure_endpoint=base_url, api_version="2024-05-01-preview", api_key=api_key)
    return OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key=api_key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url", default=os.environ.get("ORCHESTRATOR_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("ORCHESTRATOR_API_KEY"))
    parser.add_argument("--client", choices=["openai", "azure"], default="openai")
    parser.add_argument("--model", default="local")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("pass --api-key or set ORCHESTRATOR_API_KEY (orchestrator dev prints one)")

    client = make_client(args.client, args.base_url, args.api_key)
    assistant = client.beta.assistants.create(
        model=args.model,
        name="Weather helper",
        instructions="Answer with the tool's result.",
        tools=[WEATHER_TOOL],
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": QUESTION}])
    print(f"{args.client} client, assistant {assistant.id}, thread {thread.id}")
    print(f"user: {QUESTION}")
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=Handler(client)
    ) as stream:
        stream.until_done()

    run = client.beta.threads.runs.list(thread_id=thread.id, limit=1).data[0]
    return 0 if run.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
