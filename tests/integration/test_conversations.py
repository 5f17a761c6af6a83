"""The Conversations use cases and the conversation store on real Postgres and on the SQLite of
`orchestrator dev`: items in order, pages, copies, tenant walls, and appends that neither double nor share
positions when they race."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from orchestrator.adapters.ports import InMemoryBus, InMemoryQueue
from orchestrator.context import Context
from orchestrator.db import conversations as store
from orchestrator.db.connection import make_engine, make_sessionmaker
from orchestrator.db.migrate import upgrade
from orchestrator.db.response_models import ConversationItem
from orchestrator.domain.errors import InvalidRequest, NotFound
from orchestrator.domain.response_items import normalize
from orchestrator.schemas.conversations import CreateConversation, CreateItems, UpdateConversation
from orchestrator.services import conversations
from orchestrator.services.keys import create_key
from orchestrator.settings import Settings


@pytest.fixture(params=["postgres", "sqlite"])
def db(request, tmp_path):
    """A context on the shared Postgres, or on a migrated SQLite file as `orchestrator dev` runs it."""
    if request.param == "postgres":
        yield request.getfixturevalue("ctx")
        return
    url = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    upgrade(url)
    settings = Settings(database_url=url)
    engine = make_engine(settings)
    yield Context(settings, make_sessionmaker(engine), InMemoryQueue(), InMemoryBus())
    engine.dispose()


@pytest.fixture
def tenant_id(db):
    return create_key(db, "conversations")[0]


def texts(page: dict) -> list[str]:
    return [item["content"][0]["text"] for item in page["data"]]


def new(db, tenant_id, *words: str, **metadata: str) -> dict:
    body = CreateConversation(items=[{"role": "user", "content": w} for w in words], metadata=metadata)
    return conversations.create(db, tenant_id, body)


def listing(db, tenant_id, cid, *, limit=20, order="desc", after=None, include=()):
    return conversations.list_items(
        db, tenant_id, cid, limit=limit, order=order, after=after, include=include
    )


def test_a_conversation_keeps_its_items_in_order_and_pages_over_them_both_ways(db, tenant_id):
    created = new(db, tenant_id, "one", "two", "three", "four", "five", team="a")
    assert created["id"].startswith("conv_")
    assert created | {"id": "x", "created_at": 0} == {
        "id": "x",
        "object": "conversation",
        "created_at": 0,
        "metadata": {"team": "a"},
    }
    assert conversations.get(db, tenant_id, created["id"]) == created
    cid = created["id"]
    assert texts(listing(db, tenant_id, cid)) == ["five", "four", "three", "two", "one"]
    first = listing(db, tenant_id, cid, order="asc", limit=2)
    assert (texts(first), first["has_more"]) == (["one", "two"], True)
    assert (first["first_id"], first["last_id"]) == (first["data"][0]["id"], first["data"][1]["id"])
    second = listing(db, tenant_id, cid, order="asc", limit=2, after=first["last_id"])
    third = listing(db, tenant_id, cid, order="asc", limit=2, after=second["last_id"])
    assert (texts(second), texts(third), third["has_more"]) == (["three", "four"], ["five"], False)
    backwards = listing(db, tenant_id, cid, limit=3, after=third["last_id"])
    assert texts(backwards) == ["four", "three", "two"]
    with pytest.raises(InvalidRequest) as error:
        listing(db, tenant_id, cid, after="msg_notinthisconversation")
    assert error.value.param == "after"


def test_items_are_whole_messages_with_ids_and_statuses(db, tenant_id):
    cid = new(db, tenant_id)["id"]
    body = CreateItems(
        items=[
            {"role": "assistant", "content": "hi", "id": "msg_given"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ]
    )
    added = conversations.add_items(db, tenant_id, cid, body)
    assert added["object"] == "list" and added["has_more"] is False
    message, call, output = added["data"]
    assert message == {
        "id": "msg_given",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "hi", "annotations": []}],
    }
    assert call["id"].startswith("fc_") and output["id"].startswith("fco_")
    assert (added["first_id"], added["last_id"]) == ("msg_given", output["id"])
    assert conversations.get_item(db, tenant_id, cid, call["id"]) == call
    with db.uow() as uow:
        assert store.items_of(uow.session, tenant_id, cid) == added["data"]


def test_an_item_id_the_conversation_holds_is_refused_and_nothing_is_added(db, tenant_id):
    cid = new(db, tenant_id, "first")["id"]
    held = listing(db, tenant_id, cid)["data"][0]["id"]
    for items in (
        [{"role": "user", "content": "new"}, {"role": "user", "content": "again", "id": held}],
        [
            {"role": "user", "content": "a", "id": "msg_twice"},
            {"role": "user", "content": "b", "id": "msg_twice"},
        ],
    ):
        with pytest.raises(InvalidRequest) as error:
            conversations.add_items(db, tenant_id, cid, CreateItems(items=items))
        assert error.value.param == "items[1].id"
    assert texts(listing(db, tenant_id, cid)) == ["first"]


def test_an_item_reference_becomes_a_copy_of_the_tenants_item_it_names(db, tenant_id):
    source = new(db, tenant_id, "original")["id"]
    original = listing(db, tenant_id, source)["data"][0]
    target = new(db, tenant_id)["id"]
    reference = CreateItems(items=[{"type": "item_reference", "id": original["id"]}])
    assert conversations.add_items(db, tenant_id, target, reference)["data"] == [original]
    stranger = create_key(db, "stranger")[0]
    theirs = new(db, stranger)["id"]
    with pytest.raises(NotFound) as error:
        conversations.add_items(db, stranger, theirs, reference)
    assert error.value.param == "items[0].id"


def test_update_replaces_the_metadata_and_null_clears_it(db, tenant_id):
    cid = new(db, tenant_id, a="1")["id"]
    assert conversations.update(db, tenant_id, cid, UpdateConversation(metadata={"b": "2"}))["metadata"] == {
        "b": "2"
    }
    assert conversations.update(db, tenant_id, cid, UpdateConversation(metadata=None))["metadata"] == {}
    assert conversations.get(db, tenant_id, cid)["metadata"] == {}


def test_deleting_an_item_answers_the_conversation_and_deleting_the_conversation_takes_its_items(
    db, tenant_id
):
    created = new(db, tenant_id, "keep", "drop")
    cid = created["id"]
    drop = listing(db, tenant_id, cid)["data"][0]["id"]
    assert conversations.delete_item(db, tenant_id, cid, drop) == created
    with pytest.raises(NotFound):
        conversations.get_item(db, tenant_id, cid, drop)
    with pytest.raises(NotFound):
        conversations.delete_item(db, tenant_id, cid, drop)
    assert texts(listing(db, tenant_id, cid)) == ["keep"]
    assert conversations.delete(db, tenant_id, cid) == {
        "id": cid,
        "object": "conversation.deleted",
        "deleted": True,
    }
    with db.uow() as uow:
        left = uow.session.scalar(
            select(func.count()).select_from(ConversationItem).where(ConversationItem.conversation_id == cid)
        )
    assert left == 0
    with pytest.raises(NotFound):
        conversations.get(db, tenant_id, cid)


def test_another_tenants_conversation_reads_exactly_like_a_missing_one(db, tenant_id):
    cid = new(db, tenant_id, "private")["id"]
    item = listing(db, tenant_id, cid)["data"][0]["id"]
    stranger = create_key(db, "stranger")[0]
    attempts = [
        lambda t, c: conversations.get(db, t, c),
        lambda t, c: conversations.update(db, t, c, UpdateConversation(metadata={"x": "y"})),
        lambda t, c: listing(db, t, c),
        lambda t, c: conversations.add_items(db, t, c, CreateItems(items=[{"role": "user", "content": "x"}])),
        lambda t, c: conversations.get_item(db, t, c, item),
        lambda t, c: conversations.delete_item(db, t, c, item),
        lambda t, c: conversations.delete(db, t, c),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound) as theirs:
            attempt(stranger, cid)
        with pytest.raises(NotFound) as missing:
            attempt(stranger, "conv_missing")
        assert theirs.value.message == missing.value.message.replace("conv_missing", cid)
    with db.uow() as uow, pytest.raises(NotFound):
        store.items_of(uow.session, stranger, cid)
    assert texts(listing(db, tenant_id, cid)) == ["private"]
    assert conversations.get(db, tenant_id, cid)["metadata"] == {}


def test_include_shows_what_is_left_out_without_it(db, tenant_id):
    cid = new(db, tenant_id)["id"]
    search = {
        "type": "file_search_call",
        "id": "fs_1",
        "status": "completed",
        "queries": ["q"],
        "results": [],
    }
    conversations.add_items(db, tenant_id, cid, CreateItems(items=[search]))
    assert listing(db, tenant_id, cid)["data"][0]["results"] is None
    assert listing(db, tenant_id, cid, include={"file_search_call.results"})["data"][0]["results"] == []


def test_a_redone_append_adds_nothing_and_a_deleted_conversation_takes_nothing(db, tenant_id):
    cid = new(db, tenant_id, "question")["id"]
    items = normalize([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    for expected in (items, []):
        with db.uow() as uow:
            assert store.append(uow.session, cid, items, now=1) == expected
            uow.commit()
    assert texts(listing(db, tenant_id, cid, order="asc")) == ["question", "q", "a"]
    conversations.delete(db, tenant_id, cid)
    with db.uow() as uow:
        assert store.append(uow.session, cid, normalize("late"), now=1) == []
        uow.commit()


def test_concurrent_appends_keep_positions_unique_dense_and_each_batch_in_order(db, tenant_id):
    cid = new(db, tenant_id)["id"]
    writers, batch = 6, 5
    batches = [
        normalize([{"role": "user", "content": f"w{w}-{i}"} for i in range(batch)]) for w in range(writers)
    ]
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def write(items):
        try:
            start.wait()
            with db.uow() as uow:
                store.append(uow.session, cid, items, now=1)
                uow.commit()
        except BaseException as error:  # the assertion below reports it
            failures.append(error)

    threads = [threading.Thread(target=write, args=(items,)) for items in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with db.uow() as uow:
        rows = uow.session.execute(
            select(ConversationItem.position, ConversationItem.data)
            .where(ConversationItem.conversation_id == cid)
            .order_by(ConversationItem.position)
        ).all()
    assert [row.position for row in rows] == list(range(writers * batch))
    shown = [row.data["content"][0]["text"] for row in rows]
    for w in range(writers):
        mine = [text for text in shown if text.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{i}" for i in range(batch)]
        # a batch is contiguous: appends do not interleave
        first = shown.index(f"w{w}-0")
        assert shown[first : first + batch] == mine
