"""What a model or a tool produces that Postgres cannot store (U+0000) is stored as U+FFFD, and a row the
database refuses for good fails the run once: never handed out again, never redoing the code or the model
call. With the local model and the real jail, and with the fake upstream (real Postgres)."""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest
from sqlalchemy import select, text

from orchestrator.adapters.ports import InMemoryBus, InMemoryQueue
from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.db.connection import make_sessionmaker
from orchestrator.engine import advance as engine
from orchestrator.engine import sweeper
from orchestrator.providers.local import LocalModel
from orchestrator.providers.upstream import close_clients
from orchestrator.sandbox.local import LocalSandbox
from orchestrator.schemas.assistants import CreateAssistant
from orchestrator.schemas.runs import CreateThreadAndRun
from orchestrator.services import assistants, runs
from orchestrator.services.keys import create_key
from orchestrator.settings import Settings
from tests.integration.conftest import MovableClock
from tests.support.fake_upstream import FakeUpstream
from tests.support.sandbox import needs_bwrap, sandbox_settings

NUL_CODE = "Run this:\n```python\nprint('a' + chr(0) + 'b')\n```"
LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
CODE_TOOL = {"type": "code_interpreter"}


class Counted:
    """A spy around the real model or sandbox: how many times the engine called it."""

    def __init__(self, inner, method: str):
        self.inner, self.method, self.calls = inner, method, 0

    def __getattr__(self, name):
        attribute = getattr(self.inner, name)
        if name != self.method:
            return attribute

        def counted(*args, **kwargs):
            self.calls += 1
            return attribute(*args, **kwargs)

        return counted


@pytest.fixture(scope="module")
def jail(tmp_path_factory):
    sandbox = Counted(LocalSandbox(sandbox_settings(tmp_path_factory.mktemp("nul-jail"))), "execute")
    yield sandbox
    sandbox.inner.shutdown()


@pytest.fixture(scope="module")
def fake():
    with FakeUpstream() as server:
        yield server
    close_clients()


def context(engine, database_url, sandbox, **settings) -> Context:
    values = {"database_url": database_url, "lease_seconds": 2, "requeue_after_seconds": 1, **settings}
    return Context(
        Settings(**values),
        make_sessionmaker(engine),
        InMemoryQueue(),
        InMemoryBus(),
        MovableClock(),
        sandbox=sandbox,
    )


def start(ctx, model: str, content: str, tools: list, **options) -> dict:
    tenant, _key = create_key(ctx, f"unstorable-{uuid.uuid4().hex[:8]}")
    assistant = assistants.create(ctx, tenant, CreateAssistant(model=model, tools=tools))
    body = CreateThreadAndRun.model_validate(
        {"assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": content}]}}
        | options
    )
    return runs.create_thread_and_run(ctx, tenant, body).run


def deliver(ctx, run_id: str, model, times: int = 4) -> None:
    """The worker's task, delivered again and again as the sweep would hand the run out: a run whose
    writes keep failing would be redone each time."""
    for _ in range(times):
        # What Celery does with a task that raised: logs it; the sweep hands the run out again.
        with contextlib.suppress(Exception):
            engine.advance(ctx, run_id, model)
        ctx.clock.offset += 5  # past the lease and the requeue delay
        sweeper.sweep(ctx)


def outcome(ctx, run_id: str) -> tuple[models.Run, list[models.RunStep], models.Message | None]:
    with ctx.uow() as uow:
        run = uow.session.get(models.Run, run_id)
        steps = uow.session.scalars(
            select(models.RunStep).where(models.RunStep.run_id == run_id).order_by(models.RunStep.turn)
        ).all()
        message = uow.session.scalar(select(models.Message).where(models.Message.run_id == run_id))
        return run, list(steps), message


@needs_bwrap
def test_a_nul_in_code_output_and_in_the_local_models_reply_is_stored_once_as_u_fffd(
    engine, database_url, jail
):
    ctx = context(engine, database_url, jail)
    model = Counted(LocalModel(), "stream")
    run = start(ctx, "local", NUL_CODE, [CODE_TOOL])
    before = jail.calls
    deliver(ctx, run["id"], model)
    done, steps, message = outcome(ctx, run["id"])
    assert done.status == "completed", done.last_error
    assert jail.calls - before == 1 and model.calls == 2  # the code once; the call asking for it, the reply
    call = steps[0].step_details["tool_calls"][0]
    assert call["code_interpreter"]["outputs"] == [{"type": "logs", "logs": "a\ufffdb"}]
    assert "a\ufffdb" in message.content[0]["text"]["value"]  # the local model quotes the output


def test_a_nul_in_an_upstream_models_text_is_stored_once_as_u_fffd(engine, database_url, fake):
    fake.reset()
    ctx = context(engine, database_url, None, openai_base_url=fake.url, openai_api_key="sk-test")
    run = start(ctx, "gpt-fake", "[[nul]] hello there", [])
    deliver(ctx, run["id"], None)
    done, steps, message = outcome(ctx, run["id"])
    assert done.status == "completed", done.last_error
    assert len(fake.requests) == 1
    assert message.content[0]["text"]["value"] == "Echo: \ufffdhello \ufffdthere\ufffd"
    assert [s.status for s in steps] == ["completed"]


def test_a_nul_in_an_upstream_models_function_arguments_is_asked_for_once(engine, database_url, fake):
    fake.reset()
    ctx = context(engine, database_url, None, openai_base_url=fake.url, openai_api_key="sk-test")
    run = start(ctx, "gpt-fake", '[[nul]] [[tools]] {"q": "x"}', [LOOKUP])
    deliver(ctx, run["id"], None)
    done, steps, _message = outcome(ctx, run["id"])
    assert done.status == "requires_action", done.last_error
    assert len(fake.requests) == 1
    (call,) = done.required_action["submit_tool_outputs"]["tool_calls"]
    assert "\x00" not in call["function"]["arguments"] and "\ufffd" in call["function"]["arguments"]
    assert steps[0].step_details["tool_calls"][0]["function"]["arguments"] == call["function"]["arguments"]


@needs_bwrap
def test_a_nul_in_code_an_upstream_model_ran_is_run_once_and_read_back_as_stored(
    engine, database_url, fake, jail
):
    fake.reset()
    ctx = context(engine, database_url, jail, openai_base_url=fake.url, openai_api_key="sk-test")
    arguments = json.dumps({"code": "print('a' + chr(0) + 'b')"})
    run = start(
        ctx, "gpt-fake", f"[[tools]] {arguments}", [CODE_TOOL], tool_choice={"type": "code_interpreter"}
    )
    before = jail.calls
    deliver(ctx, run["id"], None)
    done, steps, message = outcome(ctx, run["id"])
    assert done.status == "completed", done.last_error
    assert jail.calls - before == 1 and len(fake.requests) == 2  # asked for the code; read its output
    assert fake.requests[1].body["messages"][-1]["content"] == "a\ufffdb"
    assert message.content[0]["text"]["value"] == "Tool results: a\ufffdb"


@pytest.fixture
def refusing(engine):
    """Postgres refusing, for good, any message whose text holds REFUSED (a trigger raising a data
    exception): a row that can never be written, whatever the reason."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.content::text LIKE '%REFUSED%' THEN "
                "RAISE EXCEPTION 'refused' USING ERRCODE = 'data_exception'; END IF; RETURN NEW; END $$"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER refuse_poison BEFORE UPDATE ON messages FOR EACH ROW "
                "EXECUTE FUNCTION refuse_poison()"
            )
        )
    yield
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER refuse_poison ON messages"))
        connection.execute(text("DROP FUNCTION refuse_poison()"))


def test_a_row_the_database_refuses_for_good_fails_the_run_once_with_last_error(
    engine, database_url, refusing
):
    ctx = context(engine, database_url, None)
    model = Counted(LocalModel(), "stream")
    run = start(ctx, "local", "REFUSED words", [])
    deliver(ctx, run["id"], model)
    done, steps, _message = outcome(ctx, run["id"])
    assert done.status == "failed" and done.last_error["code"] == "server_error"
    assert "could not be stored" in done.last_error["message"]
    assert model.calls == 1
    assert [s.status for s in steps] == ["failed"]
