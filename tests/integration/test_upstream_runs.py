"""Whole runs through the engine against the fake upstream: the registry routes a non-local model to
UpstreamModel, and its chunks, usage and failures become the run's outcome (real Postgres)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from orchestrator.adapters.ports import InMemoryBus, InMemoryQueue
from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.db.connection import make_sessionmaker
from orchestrator.engine import advance as engine
from orchestrator.providers.upstream import close_clients
from orchestrator.schemas.assistants import CreateAssistant
from orchestrator.schemas.runs import CreateThreadAndRun, SubmitToolOutputs
from orchestrator.services import assistants, runs
from orchestrator.services.keys import create_key
from orchestrator.settings import Settings
from tests.support.fake_upstream import FakeUpstream

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CLOCK = {"type": "function", "function": {"name": "get_time"}}


@pytest.fixture(scope="module")
def fake():
    with FakeUpstream() as server:
        yield server
    close_clients()


@pytest.fixture
def upstream_ctx(engine, database_url, fake):
    fake.reset()
    settings = Settings(
        database_url=database_url,
        openai_base_url=fake.url,
        openai_api_key="sk-test",
        models_file=None,
        lease_seconds=2,
        upstream_timeout_seconds=1,
        upstream_backoff_seconds=0.01,
    )
    return Context(settings, make_sessionmaker(engine), InMemoryQueue(), InMemoryBus())


@pytest.fixture
def tenant_id(upstream_ctx):
    tenant, _key = create_key(upstream_ctx, "upstream-runs")
    return tenant


def start(ctx, tenant, text, tools=(), **options):
    assistant = assistants.create(ctx, tenant, CreateAssistant(model="gpt-fake", tools=list(tools)))
    body = CreateThreadAndRun.model_validate(
        {
            "assistant_id": assistant["id"],
            "thread": {"messages": [{"role": "user", "content": text}]},
            **options,
        }
    )
    return runs.create_thread_and_run(ctx, tenant, body).run


def row(ctx, run_id) -> models.Run:
    with ctx.uow() as uow:
        run = uow.session.get(models.Run, run_id)
        uow.session.expunge(run)
        return run


def reply(ctx, run_id) -> models.Message | None:
    with ctx.uow() as uow:
        return uow.session.scalar(select(models.Message).where(models.Message.run_id == run_id))


def test_a_run_on_an_upstream_model_completes_with_the_streamed_text_and_its_usage(
    upstream_ctx, tenant_id, fake
):
    run = start(upstream_ctx, tenant_id, "hello upstream")
    engine.advance(upstream_ctx, run["id"])
    done = row(upstream_ctx, run["id"])
    assert done.status == "completed"
    assert reply(upstream_ctx, run["id"]).content[0]["text"]["value"] == "Echo: hello upstream"
    assert done.usage["completion_tokens"] == 3 and done.usage["prompt_tokens"] > 0
    assert fake.requests[0].body["model"] == "gpt-fake"


def test_tool_calls_over_two_rounds_then_a_reply_with_every_output(upstream_ctx, tenant_id, fake):
    arguments = {"city": "Paris"}
    run = start(upstream_ctx, tenant_id, f"[[tools]] {json.dumps(arguments)}", tools=[WEATHER, CLOCK])
    engine.advance(upstream_ctx, run["id"])
    waiting = row(upstream_ctx, run["id"])
    assert waiting.status == "requires_action"
    calls = waiting.required_action["submit_tool_outputs"]["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("get_weather", arguments),
        ("get_time", arguments),
    ]
    outputs = [{"tool_call_id": c["id"], "output": f"out-{i}"} for i, c in enumerate(calls)]
    runs.submit_tool_outputs(
        upstream_ctx, tenant_id, run["thread_id"], run["id"], SubmitToolOutputs(tool_outputs=outputs)
    )
    engine.advance(upstream_ctx, run["id"])
    assert row(upstream_ctx, run["id"]).status == "completed"
    assert reply(upstream_ctx, run["id"]).content[0]["text"]["value"] == "Tool results: out-0 | out-1"
    second = fake.requests[-1].body["messages"]
    assert [m["role"] for m in second[-3:]] == ["assistant", "tool", "tool"]
    assert [c["id"] for c in second[-3]["tool_calls"]] == [c["id"] for c in calls]


def test_a_rate_limited_upstream_fails_the_run_with_rate_limit_exceeded(upstream_ctx, tenant_id, fake):
    run = start(upstream_ctx, tenant_id, "[[429]]")
    engine.advance(upstream_ctx, run["id"])
    failed = row(upstream_ctx, run["id"])
    assert failed.status == "failed" and failed.last_error["code"] == "rate_limit_exceeded"
    assert len(fake.requests) == 3


def test_a_prompt_the_upstream_rejects_fails_the_run_with_invalid_prompt(upstream_ctx, tenant_id, fake):
    run = start(upstream_ctx, tenant_id, "[[400]]")
    engine.advance(upstream_ctx, run["id"])
    failed = row(upstream_ctx, run["id"])
    assert failed.status == "failed" and failed.last_error["code"] == "invalid_prompt"
    assert "Scripted failure 400" in failed.last_error["message"]


def test_a_reply_cut_by_max_completion_tokens_ends_the_run_incomplete(upstream_ctx, tenant_id, fake):
    run = start(upstream_ctx, tenant_id, "[[long]]", max_completion_tokens=256)
    engine.advance(upstream_ctx, run["id"])
    done = row(upstream_ctx, run["id"])
    assert done.status == "incomplete" and done.incomplete_details == {"reason": "max_completion_tokens"}
    assert fake.requests[0].body["max_completion_tokens"] == 256


def test_cancelling_a_streaming_run_closes_the_upstream_stream(upstream_ctx, tenant_id, fake):
    run = start(upstream_ctx, tenant_id, "[[long]] [[slow:0.02]]")
    worker = threading.Thread(target=engine.advance, args=(upstream_ctx, run["id"]))
    worker.start()
    deadline = time.monotonic() + 5
    while reply(upstream_ctx, run["id"]) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    runs.cancel(upstream_ctx, tenant_id, run["thread_id"], run["id"])
    worker.join(5)
    assert row(upstream_ctx, run["id"]).status == "cancelled"
    assert fake.disconnected.wait(2)
