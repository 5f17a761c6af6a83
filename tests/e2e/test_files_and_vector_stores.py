"""Files, vector stores, their files and batches, and search, through the official SDK's own methods and
poll helpers, with the OpenAI and the Azure client, against the production stack and `orchestrator dev`."""

from __future__ import annotations

import asyncio
import os

import openai
import pytest

from tests.conftest import on_both_targets
from tests.support import documents
from tests.support.clients import make_async_client, make_client

pytestmark = [pytest.mark.e2e, on_both_targets]
STACK_CLIENT = "azure"  # the pairing of client flavours and targets swapped (tests/conftest.py)

KB = {
    "refunds.md": b"Refund policy: damaged goods can be returned within 30 days for a full refund.",
    "shipping.txt": b"Shipping: we ship worldwide, express delivery takes two days.",
    "garden.html": b"<html><body><h1>Garden</h1><p>Water the tomatoes early and prune basil.</p></body></html>",
}


def upload(client, name: str, data: bytes, purpose: str = "assistants"):
    return client.files.create(file=(name, data), purpose=purpose)


def filled_store(client, docs: dict[str, bytes] = KB, **options):
    store = client.vector_stores.create(name="kb", **options)
    batch = client.vector_stores.file_batches.upload_and_poll(
        store.id, files=[(name, data) for name, data in docs.items()]
    )
    assert batch.file_counts.completed == len(docs), batch
    return store


def test_a_file_round_trips_its_exact_bytes_and_is_listed_and_deleted(client):
    data = os.urandom(300_000) + b"\x00\xff end"
    created = upload(client, "blob.bin", data, purpose="user_data")
    assert created.id.startswith("file-")
    assert (created.object, created.bytes, created.filename, created.purpose) == (
        "file",
        len(data),
        "blob.bin",
        "user_data",
    )
    assert created.status == "processed" and created.expires_at is None
    assert client.files.retrieve(created.id).model_dump() == created.model_dump()
    assert client.files.content(created.id).read() == data
    assert created.id in [f.id for f in client.files.list(purpose="user_data")]
    assert created.id not in [f.id for f in client.files.list(purpose="batch")]
    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "file")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)


def test_files_list_pages_with_after_and_order_and_an_upload_can_expire(client):
    made = [upload(client, f"page{i}.txt", b"x", purpose="evals").id for i in range(3)]
    newest_first = [f.id for f in client.files.list(purpose="evals", limit=2)]  # auto-pages on
    assert newest_first[:3] == made[::-1]
    oldest_first = [f.id for f in client.files.list(purpose="evals", order="asc", limit=1)]
    assert oldest_first[-3:] == made
    page = client.files.list(purpose="evals", order="asc", after=made[0], limit=1)
    assert [f.id for f in page.data] == [made[1]] and page.has_more
    expiring = client.files.create(
        file=("soon.txt", b"temporary"),
        purpose="assistants",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert expiring.expires_at == expiring.created_at + 3600


def test_an_upload_larger_than_the_json_body_limit_is_streamed_in_whole(client):
    data = b"0123456789abcdef" * (5 * 1024 * 1024 // 16 + 1)  # past the 4 MiB body limit
    created = upload(client, "large.txt", data)
    assert created.bytes == len(data)
    assert client.files.content(created.id).read() == data


def test_a_vector_store_round_trips_create_retrieve_modify_list_and_delete(client):
    store = client.vector_stores.create(
        name="docs",
        description="team docs",
        metadata={"team": "a"},
        expires_after={"anchor": "last_active_at", "days": 3},
    )
    assert store.id.startswith("vs_")
    assert (store.object, store.name, store.metadata, store.status) == (
        "vector_store",
        "docs",
        {"team": "a"},
        "completed",
    )
    assert store.file_counts.model_dump() == {
        "in_progress": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "total": 0,
    }
    assert store.expires_after.days == 3 and store.expires_at == store.last_active_at + 3 * 86400
    assert client.vector_stores.retrieve(store.id).model_dump() == store.model_dump()
    changed = client.vector_stores.update(
        store.id, name="renamed", metadata={"team": "b"}, expires_after=None
    )
    assert (changed.name, changed.metadata, changed.expires_after, changed.expires_at) == (
        "renamed",
        {"team": "b"},
        None,
        None,
    )
    assert store.id in [s.id for s in client.vector_stores.list(limit=100)]
    deleted = client.vector_stores.delete(store.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (store.id, True, "vector_store.deleted")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)


def test_a_deleted_store_leaves_every_assistant_and_thread_and_no_run_searches_it(client):
    """As hosted: the store is gone from `tool_resources` at once, and the local model, with no store left
    to search (rule 4), calls the function tool the message names (rule 2)."""
    store = filled_store(client)
    other = client.vector_stores.create(name="kept")
    lookup = {"type": "function", "function": {"name": "lookup"}}
    assistant = client.beta.assistants.create(
        model="local",
        tools=[{"type": "file_search"}, lookup],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "please lookup refunds"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    kept = client.beta.threads.create(tool_resources={"file_search": {"vector_store_ids": [other.id]}})
    client.vector_stores.delete(store.id)
    assert client.beta.assistants.retrieve(assistant.id).tool_resources.file_search.vector_store_ids == []
    assert client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids == []
    assert client.beta.threads.retrieve(kept.id).tool_resources.file_search.vector_store_ids == [other.id]
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "requires_action", run.last_error
    assert [c.function.name for c in run.required_action.submit_tool_outputs.tool_calls] == ["lookup"]
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert [call.type for step in steps for call in step.step_details.tool_calls] == ["function"]


def test_the_poll_helpers_end_with_every_format_ingested(client):
    store = client.vector_stores.create(name="formats")
    uploaded = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("report.pdf", documents.pdf("Quarterly revenue grew nine percent"))
    )
    assert (uploaded.status, uploaded.last_error, uploaded.vector_store_id) == ("completed", None, store.id)
    assert uploaded.usage_bytes > 0
    assert uploaded.chunking_strategy.static.max_chunk_size_tokens == 800
    memo = upload(client, "memo.docx", documents.docx("The budget was approved"))
    attached = client.vector_stores.files.create_and_poll(
        memo.id,
        vector_store_id=store.id,
        attributes={"kind": "memo", "year": 2024},
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50},
        },
    )
    assert attached.status == "completed" and attached.attributes == {"kind": "memo", "year": 2024}
    assert attached.chunking_strategy.static.model_dump() == {
        "max_chunk_size_tokens": 200,
        "chunk_overlap_tokens": 50,
    }
    deck = upload(client, "deck.pptx", documents.pptx("Launch planned for May"))
    batch = client.vector_stores.file_batches.create_and_poll(
        store.id, files=[{"file_id": deck.id, "attributes": {"kind": "deck"}}]
    )
    assert batch.id.startswith("vsfb_") and batch.object == "vector_store.files_batch"
    assert (batch.status, batch.file_counts.completed, batch.file_counts.total) == ("completed", 1, 1)
    assert [
        f.id for f in client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    ] == [deck.id]
    final = client.vector_stores.retrieve(store.id)
    assert (final.status, final.file_counts.completed, final.file_counts.total) == ("completed", 3, 3)
    assert final.usage_bytes == sum(f.usage_bytes for f in client.vector_stores.files.list(store.id))
    text = client.vector_stores.files.content(memo.id, vector_store_id=store.id)
    assert "budget was approved" in "".join(part.text for part in text)


def test_search_ranks_filters_and_thresholds(client):
    store = filled_store(client)
    hits = client.vector_stores.search(store.id, query="refund for damaged goods").data
    assert hits[0].filename == "refunds.md" and hits[0].score == pytest.approx(1.0)
    assert "30 days" in hits[0].content[0].text and hits[0].content[0].type == "text"
    assert all(0 <= hit.score <= 1 for hit in hits)
    assert [h.filename for h in client.vector_stores.search(store.id, query="tomatoes").data] == [
        "garden.html"
    ]
    assert len(client.vector_stores.search(store.id, query="goods days", max_num_results=1).data) == 1
    strict = client.vector_stores.search(
        store.id,
        query="damaged goods refund",
        ranking_options={"ranker": "auto", "score_threshold": 0.5},
        rewrite_query=True,
    ).data
    assert [h.filename for h in strict] == ["refunds.md"]
    several = client.vector_stores.search(store.id, query=["tomatoes", "express delivery"]).data
    assert {h.filename for h in several} == {"garden.html", "shipping.txt"}
    for item in client.vector_stores.files.list(store.id):
        name = client.files.retrieve(item.id).filename
        client.vector_stores.files.update(
            item.id, vector_store_id=store.id, attributes={"name": name, "rank": len(name)}
        )
    only = client.vector_stores.search(
        store.id, query="goods shipping", filters={"type": "eq", "key": "name", "value": "shipping.txt"}
    ).data
    assert [h.filename for h in only] == ["shipping.txt"] and only[0].attributes["name"] == "shipping.txt"
    compound = {
        "type": "or",
        "filters": [
            {"type": "gt", "key": "rank", "value": 11},
            {"type": "eq", "key": "name", "value": "refunds.md"},
        ],
    }
    # rank = the name's length: refunds.md 10, shipping.txt 12, garden.html 11 (filtered out, though it has "water")
    found = client.vector_stores.search(store.id, query="goods ship water", filters=compound).data
    assert {h.filename for h in found} == {"refunds.md", "shipping.txt"}


def test_store_files_are_listed_by_status_updated_and_removed(client):
    store = client.vector_stores.create(name="statuses")
    good = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("ok.txt", b"fine text"))
    junk = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(40))
    )
    empty = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("empty.txt", b""))
    broken = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("bad.pdf", b"%PDF-1.7 no body")
    )
    assert (junk.status, junk.last_error.code) == ("failed", "unsupported_file")
    assert (empty.status, empty.last_error.code) == ("failed", "invalid_file")
    assert (broken.status, broken.last_error.code) == ("failed", "invalid_file")
    assert [f.id for f in client.vector_stores.files.list(store.id, filter="completed")] == [good.id]
    assert {f.id for f in client.vector_stores.files.list(store.id, filter="failed")} == {
        junk.id,
        empty.id,
        broken.id,
    }
    counts = client.vector_stores.retrieve(store.id).file_counts
    assert (counts.completed, counts.failed, counts.total) == (1, 3, 4)
    updated = client.vector_stores.files.update(good.id, vector_store_id=store.id, attributes={"a": True})
    assert updated.attributes == {"a": True}
    removed = client.vector_stores.files.delete(good.id, vector_store_id=store.id)
    assert (removed.id, removed.deleted, removed.object) == (good.id, True, "vector_store.file.deleted")
    assert client.files.retrieve(good.id).id == good.id  # the file itself stays
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(good.id, vector_store_id=store.id)


def test_a_file_deleted_leaves_every_store_at_once(client):
    shared = upload(client, "shared.md", b"Unicorns graze on the northern meadow.")
    first = client.vector_stores.create(name="one", file_ids=[shared.id])
    second = client.vector_stores.create(name="two", file_ids=[shared.id])
    client.vector_stores.files.poll(shared.id, vector_store_id=first.id)
    client.vector_stores.files.poll(shared.id, vector_store_id=second.id)
    assert client.vector_stores.search(second.id, query="unicorns").data[0].file_id == shared.id
    client.files.delete(shared.id)
    for store in (first, second):
        assert client.vector_stores.search(store.id, query="unicorns").data == []
        assert client.vector_stores.retrieve(store.id).file_counts.total == 0


def test_a_batch_can_be_cancelled_and_its_poll_still_ends(client):
    store = client.vector_stores.create(name="cancel")
    big = upload(client, "big.txt", b"many words to chunk and index " * 400_000)  # about 12 MB
    batch = client.vector_stores.file_batches.create(store.id, file_ids=[big.id])
    cancelled = client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.status == "cancelled"
    assert (cancelled.file_counts.cancelled, cancelled.file_counts.in_progress) == (1, 0)
    polled = client.vector_stores.file_batches.poll(batch.id, vector_store_id=store.id)
    assert polled.status == "cancelled"
    assert client.vector_stores.files.retrieve(big.id, vector_store_id=store.id).status == "cancelled"


def test_tool_resources_helpers_and_attachments_make_and_fill_stores(client):
    doc = upload(client, "faq.md", b"Opening hours are nine to five on weekdays.")
    assistant = client.beta.assistants.create(
        model="local",
        tools=[{"type": "file_search"}],
        tool_resources={
            "file_search": {"vector_stores": [{"file_ids": [doc.id], "metadata": {"from": "helper"}}]}
        },
    )
    (store_id,) = assistant.tool_resources.file_search.vector_store_ids
    assert client.vector_stores.retrieve(store_id).metadata == {"from": "helper"}
    assert client.vector_stores.files.poll(doc.id, vector_store_id=store_id).status == "completed"
    assert client.beta.assistants.retrieve(assistant.id).tool_resources.file_search.vector_store_ids == [
        store_id
    ]
    note = upload(client, "note.txt", b"The parking garage closes at midnight.")
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "see file",
                "attachments": [{"file_id": note.id, "tools": [{"type": "file_search"}]}],
            }
        ]
    )
    (thread_store,) = thread.tool_resources.file_search.vector_store_ids
    made = client.vector_stores.retrieve(thread_store)
    assert (made.expires_after.anchor, made.expires_after.days) == ("last_active_at", 7)
    later = upload(client, "later.txt", b"Bicycles go in the courtyard rack.")
    client.beta.threads.messages.create(
        thread.id,
        role="user",
        content="another",
        attachments=[{"file_id": later.id, "tools": [{"type": "file_search"}]}],
    )
    assert client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids == [
        thread_store
    ]
    assert {f.id for f in client.vector_stores.files.list(thread_store)} == {note.id, later.id}
    client.vector_stores.files.poll(later.id, vector_store_id=thread_store)
    assert client.vector_stores.search(thread_store, query="bicycles").data[0].file_id == later.id
    run = client.beta.threads.create_and_run(
        assistant_id=assistant.id,
        thread={
            "messages": [
                {
                    "role": "user",
                    "content": "q",
                    "attachments": [{"file_id": doc.id, "tools": [{"type": "file_search"}]}],
                }
            ]
        },
    )
    ran_in = client.beta.threads.retrieve(run.thread_id).tool_resources.file_search.vector_store_ids
    assert len(ran_in) == 1 and ran_in != [thread_store]


def test_bad_inputs_get_4xx_and_change_nothing(client, server):
    store = client.vector_stores.create(name="guarded")
    mine = upload(client, "mine.txt", b"mine")
    other = make_client("openai", server.base, server.create_key("intruder"), max_retries=0)
    theirs = upload(other, "theirs.txt", b"theirs")
    their_store = other.vector_stores.create(name="theirs")
    not_found = [
        lambda: client.files.retrieve("file-doesnotexist"),
        lambda: client.files.retrieve(theirs.id),
        lambda: client.files.content(theirs.id),
        lambda: client.files.delete(theirs.id),
        lambda: client.vector_stores.retrieve(their_store.id),
        lambda: client.vector_stores.search(their_store.id, query="x"),
        lambda: client.vector_stores.create(file_ids=[theirs.id]),
        lambda: client.vector_stores.files.create(vector_store_id=store.id, file_id=theirs.id),
        lambda: client.vector_stores.files.create(vector_store_id=their_store.id, file_id=mine.id),
        lambda: client.vector_stores.file_batches.create(store.id, file_ids=[mine.id, theirs.id]),
        lambda: client.vector_stores.files.retrieve(mine.id, vector_store_id=store.id),
        lambda: client.vector_stores.file_batches.retrieve("vsfb_nope", vector_store_id=store.id),
        lambda: client.beta.assistants.create(
            model="local", tool_resources={"file_search": {"vector_store_ids": [their_store.id]}}
        ),
        lambda: client.beta.assistants.create(
            model="local", tool_resources={"code_interpreter": {"file_ids": [theirs.id]}}
        ),
        lambda: client.beta.threads.create(
            tool_resources={"file_search": {"vector_stores": [{"file_ids": [theirs.id]}]}}
        ),
        lambda: client.beta.threads.create(
            messages=[
                {
                    "role": "user",
                    "content": "x",
                    "attachments": [{"file_id": theirs.id, "tools": [{"type": "file_search"}]}],
                }
            ]
        ),
    ]
    for attempt in not_found:
        with pytest.raises(openai.NotFoundError):
            attempt()
    bad = [
        lambda: client.files.create(file=("x.txt", b"x"), purpose="assistants_output"),
        lambda: client.files.create(
            file=("x.txt", b"x"), purpose="assistants", expires_after={"anchor": "created_at", "seconds": 10}
        ),
        lambda: client.files.retrieve("vs_wrongprefix"),
        lambda: client.files.list(limit=10_001),
        lambda: client.vector_stores.create(
            chunking_strategy={
                "type": "static",
                "static": {"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0},
            }
        ),
        lambda: client.vector_stores.create(
            chunking_strategy={
                "type": "static",
                "static": {"max_chunk_size_tokens": 400, "chunk_overlap_tokens": 201},
            }
        ),
        lambda: client.vector_stores.create(expires_after={"anchor": "created_at", "days": 1}),
        lambda: client.vector_stores.search(store.id, query="x", max_num_results=51),
        lambda: client.vector_stores.search(
            store.id, query="x", filters={"type": "near", "key": "a", "value": 1}
        ),
        lambda: client.vector_stores.file_batches.create(
            store.id, file_ids=[mine.id], files=[{"file_id": mine.id}]
        ),
        lambda: client.vector_stores.file_batches.create(store.id, file_ids=[mine.id] * 10_001),
        lambda: client.vector_stores.files.create(
            vector_store_id=store.id, file_id=mine.id, attributes={f"k{i}": i for i in range(17)}
        ),
    ]
    for attempt in bad:
        with pytest.raises(openai.BadRequestError):
            attempt()
    assert client.vector_stores.retrieve(store.id).file_counts.total == 0
    assert theirs.id in [f.id for f in other.files.list()]
    other.close()


async def upload_and_poll_async(server):
    for flavour in ("openai", "azure"):
        client = make_async_client(flavour, server.base, server.key, max_retries=0, timeout=30)
        store = await client.vector_stores.create(name="async")
        batch = await client.vector_stores.file_batches.upload_and_poll(
            store.id, files=[("one.txt", b"async apples"), ("two.txt", b"async pears")]
        )
        assert batch.file_counts.completed == 2
        single = await client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=("three.md", b"async plums")
        )
        assert single.status == "completed"
        page = await client.vector_stores.search(store.id, query="plums")
        assert page.data[0].filename == "three.md"
        await client.close()


def test_the_async_clients_upload_poll_and_search(server):
    asyncio.run(upload_and_poll_async(server))
