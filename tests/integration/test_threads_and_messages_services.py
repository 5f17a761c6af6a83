"""Thread and message services on a real Postgres: the active-run rule, the thread lock, tenancy."""

from __future__ import annotations

import io
import time

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from orchestrator.adapters.ports import InMemoryBus, InMemoryQueue
from orchestrator.context import Context
from orchestrator.db import models, runs
from orchestrator.db import threads as db_threads
from orchestrator.db.connection import make_engine, make_sessionmaker
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import InvalidRequest, NotFound, Unauthorized
from orchestrator.domain.ids import new_id
from orchestrator.domain.lifecycle import ACTIVE, RunStatus
from orchestrator.files import uploads
from orchestrator.schemas.common import CreateMessage
from orchestrator.schemas.messages import ModifyMessage
from orchestrator.schemas.threads import CreateThread, ModifyThread
from orchestrator.services import messages, threads
from orchestrator.services.keys import Authenticator, create_key, list_keys, revoke_key
from orchestrator.settings import Settings
from tests.support.databases import throwaway_database


@pytest.fixture(scope="module")
def service_ctx():
    with throwaway_database() as url:
        settings = Settings(database_url=url)
        engine = make_engine(settings, pool_size=3)
        yield Context(settings, make_sessionmaker(engine), InMemoryQueue(), InMemoryBus())
        engine.dispose()


@pytest.fixture
def tenant_id(service_ctx):
    return create_key(service_ctx, "services")[0]


def hello(text_: str = "hello") -> CreateMessage:
    return CreateMessage(role="user", content=text_)


def add_run(ctx: Context, tenant_id: str, thread_id: str, status: RunStatus) -> str:
    run_id = new_id("run")
    with ctx.uow() as uow:
        uow.session.add(
            models.Run(
                id=run_id, tenant_id=tenant_id, thread_id=thread_id, assistant_id=new_id("asst"),
                created_at=ctx.timestamp(), created_us=monotonic_us(), status=status.value, version=1, event_seq=0,
                turn=0, takeovers=0, model="local-echo", instructions="", tools=[], metadata_={},
                truncation_strategy={"type": "auto", "last_messages": None}, tool_choice="auto",
                parallel_tool_calls=True,
            )
        )  # fmt: skip
        uow.commit()
    return run_id


def message_count(ctx: Context, thread_id: str) -> int:
    with ctx.uow() as uow:
        return uow.session.scalar(select(func.count()).where(models.Message.thread_id == thread_id))


@pytest.mark.parametrize("status", sorted(ACTIVE))
def test_adding_a_message_while_a_run_is_active_is_refused_and_writes_nothing(service_ctx, tenant_id, status):
    thread = threads.create(service_ctx, tenant_id, CreateThread(messages=[hello()]))
    run_id = add_run(service_ctx, tenant_id, thread["id"], RunStatus(status))
    with pytest.raises(InvalidRequest) as error:
        messages.create(service_ctx, tenant_id, thread["id"], hello("more"))
    assert error.value.message == f"Can't add messages to {thread['id']} while a run {run_id} is active."
    assert (error.value.param, error.value.code) == (None, None)
    assert message_count(service_ctx, thread["id"]) == 1


def test_messages_can_be_added_again_once_the_run_has_ended(service_ctx, tenant_id):
    thread = threads.create(service_ctx, tenant_id, CreateThread())
    add_run(service_ctx, tenant_id, thread["id"], RunStatus.COMPLETED)
    assert messages.create(service_ctx, tenant_id, thread["id"], hello())["status"] == "completed"
    with service_ctx.uow() as uow:
        assert runs.active_run_id(uow.session, thread["id"]) is None


def test_lock_thread_holds_the_row_until_the_transaction_ends(service_ctx, tenant_id):
    thread = threads.create(service_ctx, tenant_id, CreateThread())
    with service_ctx.uow() as holder:
        db_threads.lock(holder.session, tenant_id, thread["id"])
        with service_ctx.uow() as other:
            other.session.execute(text("SET LOCAL lock_timeout = '100ms'"))
            with pytest.raises(OperationalError):
                db_threads.lock(other.session, tenant_id, thread["id"])
        # Reading the thread, or inserting a row that only references it, is not blocked.
        with service_ctx.uow() as reader:
            reader.session.execute(text("SET LOCAL lock_timeout = '100ms'"))
            assert db_threads.load(reader.session, tenant_id, thread["id"]).id == thread["id"]
            messages.add_messages(reader.session, tenant_id, thread["id"], [hello()], service_ctx.timestamp())
            reader.commit()
    with service_ctx.uow() as later:
        assert db_threads.lock(later.session, tenant_id, thread["id"]).id == thread["id"]


def test_add_messages_keeps_the_given_order_and_the_stored_shapes(service_ctx, tenant_id):
    thread = threads.create(service_ctx, tenant_id, CreateThread())
    batch = [
        CreateMessage.model_validate({"role": "user", "content": "one"}),
        CreateMessage.model_validate(
            {"role": "assistant", "content": [{"type": "text", "text": "two"},
                                              {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
        ),
    ]  # fmt: skip
    with service_ctx.uow() as uow:
        rows = messages.add_messages(uow.session, tenant_id, thread["id"], batch, 1_700_000_000)
        uow.commit()
    assert [row.created_at for row in rows] == [1_700_000_000] * 2
    assert rows[0].created_us < rows[1].created_us
    assert rows[1].content == [
        {"type": "text", "text": {"value": "two", "annotations": []}},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
    ]
    assert (rows[0].attachments, rows[0].metadata_, rows[0].run_id, rows[0].assistant_id) == (
        [],
        {},
        None,
        None,
    )


def test_another_tenants_thread_and_messages_are_not_found(service_ctx, tenant_id):
    intruder = create_key(service_ctx, "intruder")[0]
    thread = threads.create(service_ctx, tenant_id, CreateThread(messages=[hello()]))
    message_id = messages.list_(service_ctx, tenant_id, thread["id"], limit=1, order="asc", after=None,
                                before=None)["data"][0]["id"]  # fmt: skip
    refused = [
        lambda: threads.get(service_ctx, intruder, thread["id"]),
        lambda: threads.modify(service_ctx, intruder, thread["id"], ModifyThread(metadata={"a": "b"})),
        lambda: threads.delete(service_ctx, intruder, thread["id"]),
        lambda: messages.create(service_ctx, intruder, thread["id"], hello()),
        lambda: messages.get(service_ctx, intruder, thread["id"], message_id),
        lambda: messages.modify(service_ctx, intruder, thread["id"], message_id, ModifyMessage()),
        lambda: messages.delete(service_ctx, intruder, thread["id"], message_id),
    ]
    for attempt in refused:
        with pytest.raises(NotFound) as error:
            attempt()
        assert error.value.message == f"No thread found with id '{thread['id']}'."
    assert message_count(service_ctx, thread["id"]) == 1


def test_modify_with_null_metadata_resets_it_and_leaves_other_fields_alone(service_ctx, tenant_id):
    uploaded = uploads.upload(
        service_ctx, tenant_id, source=io.BytesIO(b"data"), filename="data.csv", purpose="assistants"
    )
    resources = {"code_interpreter": {"file_ids": [uploaded["id"]]}}
    thread = threads.create(
        service_ctx,
        tenant_id,
        CreateThread.model_validate({"metadata": {"a": "b"}, "tool_resources": resources}),
    )
    changed = threads.modify(
        service_ctx, tenant_id, thread["id"], ModifyThread.model_validate({"metadata": None})
    )
    assert (changed["metadata"], changed["tool_resources"]) == ({}, resources)
    unchanged = threads.modify(service_ctx, tenant_id, thread["id"], ModifyThread())
    assert unchanged == changed


def test_a_revoked_key_stops_working_once_the_authenticator_cache_lapses(service_ctx):
    tenant_id, key = create_key(service_ctx, "short-lived")
    authenticator = Authenticator(service_ctx, ttl=0.05)
    assert authenticator.tenant_for(key) == tenant_id
    key_id = next(row["id"] for row in list_keys(service_ctx, "short-lived") if not row["revoked"])
    revoke_key(service_ctx, key_id)
    time.sleep(0.1)
    with pytest.raises(Unauthorized) as error:
        authenticator.tenant_for(key)
    assert error.value.code == "invalid_api_key"
