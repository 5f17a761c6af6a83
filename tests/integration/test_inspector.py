"""What the run inspector shows of responses and conversations, built by the services on real Postgres and
on the SQLite of `orchestrator dev`: lists newest first and paged, a response's stored stream as a timeline
with its deltas collapsed, its items and links, a conversation's items and users, and tenant walls."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from orchestrator.db.models import RunEvent
from orchestrator.domain.errors import NotFound
from orchestrator.engine import advance
from orchestrator.providers.local import LocalModel
from orchestrator.schemas.conversations import CreateConversation
from orchestrator.schemas.responses import CreateResponse
from orchestrator.services import conversations, inspector, inspector_responses
from orchestrator.services import responses as responses_service
from orchestrator.services.keys import create_key


def respond(ctx, tenant_id: str, **fields) -> str:
    """A response made through the service and worked to its end; its id."""
    body = CreateResponse.model_validate({"model": "local", **fields})
    response_id = responses_service.create(ctx, tenant_id, body).run["id"]
    advance.advance(ctx, response_id, LocalModel(delay_ms=0))
    return response_id


def stored(ctx, response_id: str, event: str | None = None) -> int:
    with ctx.uow() as uow:
        statement = select(func.count()).where(RunEvent.run_id == response_id)
        if event is not None:
            statement = statement.where(RunEvent.event == event)
        return uow.session.scalar(statement)


def test_responses_are_listed_newest_first_in_pages_with_their_first_input_and_links(any_ctx, any_tenant):
    first = respond(any_ctx, any_tenant, input="the first question")
    second = respond(any_ctx, any_tenant, input="a follow-up", previous_response_id=first, store=True)
    third = respond(
        any_ctx,
        any_tenant,
        input=[
            {"type": "function_call_output", "call_id": "call_1", "output": "42"},
            {"role": "user", "content": [{"type": "input_text", "text": "and then?"}]},
        ],
        background=True,
        store=False,
    )
    page = inspector_responses.list_responses(any_ctx, any_tenant, limit=2)
    assert [r["id"] for r in page["data"]] == [third, second] and page["has_more"] is True
    newest, chained = page["data"]
    assert newest | {"created_at": 0} == {
        "id": third,
        "status": "completed",
        "model": "local",
        "created_at": 0,
        "background": True,
        "store": False,
        "conversation_id": None,
        "previous_response_id": None,
        "preview": "and then?",
    }
    assert (chained["previous_response_id"], chained["preview"]) == (first, "a follow-up")
    rest = inspector_responses.list_responses(any_ctx, any_tenant, limit=2, before=second)
    assert [r["id"] for r in rest["data"]] == [first] and rest["has_more"] is False
    assert rest["data"][0]["preview"] == "the first question"


def test_a_responses_detail_collapses_its_stored_deltas_into_counted_stretches_that_tile_its_stream(
    any_ctx, any_tenant
):
    words = " ".join(f"w{n}" for n in range(40))
    response_id = respond(any_ctx, any_tenant, input=words, instructions="Be brief.", metadata={"k": "v"})
    detail = inspector_responses.response_detail(any_ctx, any_tenant, response_id)
    events = detail["events"]
    # Every stored event is in exactly one row, numbered as the stream numbers them (from 0, no gaps).
    assert events[0]["seq"] == 0
    for before, after in zip(events, events[1:], strict=False):
        assert after["seq"] == before.get("last_seq", before["seq"]) + 1
    assert events[-1].get("last_seq", events[-1]["seq"]) == stored(any_ctx, response_id) - 1
    deltas = [e for e in events if e["event"].endswith(".delta")]
    assert [e["event"] for e in deltas] == ["response.output_text.delta"]
    assert deltas[0]["count"] == stored(any_ctx, response_id, "response.output_text.delta") > 10
    assert deltas[0]["data"] is None and deltas[0]["until"] >= deltas[0]["at"]
    names = [e["event"] for e in events]
    assert names[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert names[-1] == "response.completed"
    assert events[-1]["data"]["response"]["status"] == "completed"
    shown = detail["response"]
    assert (shown["id"], shown["status"], shown["metadata"], shown["instructions"]) == (
        response_id,
        "completed",
        {"k": "v"},
        "Be brief.",
    )
    assert detail["engine"]["status"] == "completed" and detail["engine"]["ended_at"]
    assert detail["internals"] | {"version": 0} == {
        "turn": 1,
        "version": 0,
        "event_seq": stored(any_ctx, response_id),
        "takeovers": 0,
        "lease_held": False,
        "lease_expires_in": None,
    }
    [given] = detail["input"]
    assert given["content"][0]["text"] == words
    [made] = detail["output"]
    assert made["type"] == "message" and words in made["content"][0]["text"]


def test_a_thread_run_and_a_response_are_each_found_only_in_their_own_view(any_ctx, any_tenant):
    response_id = respond(any_ctx, any_tenant, input="hello")
    with pytest.raises(NotFound):
        inspector.run_detail(any_ctx, any_tenant, response_id)
    with pytest.raises(NotFound):
        inspector_responses.response_detail(any_ctx, any_tenant, "resp_missing")


def test_a_conversation_shows_its_items_in_order_and_the_responses_that_used_it(any_ctx, any_tenant):
    body = CreateConversation(items=[{"role": "user", "content": "hello there"}], metadata={"topic": "t"})
    cid = conversations.create(any_ctx, any_tenant, body)["id"]
    empty = conversations.create(any_ctx, any_tenant, CreateConversation())["id"]
    used = respond(any_ctx, any_tenant, input="what next?", conversation=cid)
    listed = inspector_responses.list_conversations(any_ctx, any_tenant, limit=50)
    by_id = {c["id"]: c for c in listed["data"]}
    assert (by_id[cid]["items"], by_id[cid]["preview"], by_id[cid]["metadata"]) == (
        3,
        "hello there",
        {"topic": "t"},
    )
    assert (by_id[empty]["items"], by_id[empty]["preview"]) == (0, None)
    detail = inspector_responses.conversation_detail(any_ctx, any_tenant, cid)
    assert [i["position"] for i in detail["items"]] == [0, 1, 2] and detail["has_more"] is False
    kinds = [(i["item"]["type"], i["item"]["role"]) for i in detail["items"]]
    assert kinds == [("message", "user"), ("message", "user"), ("message", "assistant")]
    assert "what next?" in detail["items"][2]["item"]["content"][0]["text"]
    assert [r["id"] for r in detail["responses"]] == [used]
    assert detail["responses"][0]["preview"] == "what next?"
    response = inspector_responses.response_detail(any_ctx, any_tenant, used)
    assert response["response"]["conversation"] == {"id": cid}


def test_conversations_page_newest_first_even_when_created_in_the_same_second(any_ctx, any_tenant):
    made = [conversations.create(any_ctx, any_tenant, CreateConversation())["id"] for _ in range(5)]
    seen, before = [], None
    while True:
        page = inspector_responses.list_conversations(any_ctx, any_tenant, limit=2, before=before)
        seen += [c["id"] for c in page["data"]]
        if not page["has_more"]:
            break
        before = page["data"][-1]["id"]
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    created = [
        c["created_at"] for c in inspector_responses.list_conversations(any_ctx, any_tenant, limit=50)["data"]
    ]
    assert created == sorted(created, reverse=True)


def test_another_tenants_responses_and_conversations_are_not_found(any_ctx, any_tenant):
    cid = conversations.create(any_ctx, any_tenant, CreateConversation())["id"]
    response_id = respond(any_ctx, any_tenant, input="mine", conversation=cid)
    other = create_key(any_ctx, "inspector-other")[0]
    assert inspector_responses.list_responses(any_ctx, other, limit=50)["data"] == []
    assert inspector_responses.list_conversations(any_ctx, other, limit=50)["data"] == []
    for look in (
        lambda: inspector_responses.response_detail(any_ctx, other, response_id),
        lambda: inspector_responses.conversation_detail(any_ctx, other, cid),
        lambda: inspector_responses.list_responses(any_ctx, other, limit=5, before=response_id),
        lambda: inspector_responses.list_conversations(any_ctx, other, limit=5, before=cid),
    ):
        with pytest.raises(NotFound):
            look()
