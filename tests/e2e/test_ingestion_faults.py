"""Ingestion with real processes: a worker SIGKILLed mid-ingestion, and uploads past their own limit."""

from __future__ import annotations

import io
import time

import openai
import pytest
from sqlalchemy import create_engine, text

from orchestrator.files.retrieval.chunking import chunks
from orchestrator.providers import tokens
from tests.e2e.conftest import FAST_FAILOVER, sdk
from tests.support.polling import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
]


def big_text(megabytes: int) -> bytes:
    line = " ".join(f"{word}{index % 997}" for index, word in enumerate(WORDS * 8)) + "\n"
    return (line * (megabytes * 1024 * 1024 // len(line) + 1)).encode()


def chunk_set_state(database_url: str, file_id: str) -> dict:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                text(
                    "SELECT cs.status, cs.lease_owner, cs.attempts, cs.chunk_count, "
                    "(SELECT count(*) FROM chunks c WHERE c.chunk_set_id = cs.id) AS stored, "
                    "(SELECT count(DISTINCT seq) FROM chunks c WHERE c.chunk_set_id = cs.id) AS seqs "
                    "FROM chunk_sets cs WHERE cs.file_id = :f"
                ),
                {"f": file_id},
            ).one()
            return dict(row._mapping)
    finally:
        engine.dispose()


def test_a_worker_killed_mid_ingestion_loses_nothing_and_stores_each_chunk_once(make_stack):
    stack = make_stack(
        workers=1,
        **FAST_FAILOVER,
        ORCHESTRATOR_REQUEUE_AFTER_SECONDS="2",
    )
    client = sdk(stack)
    data = big_text(24)  # several seconds of parsing and chunking
    uploaded = client.files.create(file=("big.txt", data), purpose="assistants")
    store = client.vector_stores.create(name="durable", file_ids=[uploaded.id])
    database = stack.env["DATABASE_URL"]
    # Kill the worker (and the parsing child in its process group) while it holds the lease.
    wait_for(lambda: chunk_set_state(database, uploaded.id)["lease_owner"], timeout=30)
    time.sleep(0.5)
    stack.processes["worker0"].kill()
    killed = chunk_set_state(database, uploaded.id)
    assert killed["status"] == "in_progress" and killed["stored"] == 0, killed
    stack.start_worker("worker1")
    done = client.vector_stores.files.poll(uploaded.id, vector_store_id=store.id, max_wait_seconds=120)
    assert (done.status, done.last_error) == ("completed", None), stack.logs()
    final = chunk_set_state(database, uploaded.id)
    expected = sum(1 for _ in chunks(data.decode(), 800, 400, tokens.chunking_encoding()))
    assert final["status"] == "completed" and final["attempts"] >= 2
    assert final["stored"] == final["seqs"] == final["chunk_count"] == expected
    counts = client.vector_stores.retrieve(store.id).file_counts
    assert (counts.completed, counts.in_progress, counts.total) == (1, 0, 1)
    assert client.vector_stores.search(store.id, query="foxtrot5").data


def test_an_upload_past_its_limit_is_a_413_and_uploads_are_not_bound_by_the_body_limit(make_stack):
    stack = make_stack(
        workers=0,
        scheduler=False,
        ORCHESTRATOR_MAX_UPLOAD_BYTES=str(2 * 1024 * 1024),
        ORCHESTRATOR_MAX_BODY_BYTES=str(64 * 1024),
    )
    client = sdk(stack)
    with pytest.raises(openai.APIStatusError) as error:
        client.files.create(file=("huge.bin", b"x" * (3 * 1024 * 1024)), purpose="assistants")
    assert error.value.status_code == 413
    assert error.value.body["code"] == "request_too_large"
    assert str(2 * 1024 * 1024) in error.value.body["message"]
    assert client.files.list().data == []
    exact = client.files.create(file=("exact.bin", b"z" * (2 * 1024 * 1024)), purpose="assistants")
    assert exact.bytes == 2 * 1024 * 1024  # the limit counts the file, not the multipart body around it
    with pytest.raises(openai.APIStatusError) as error:
        client.files.create(file=("over.bin", b"z" * (2 * 1024 * 1024 + 1)), purpose="assistants")
    assert error.value.status_code == 413 and str(2 * 1024 * 1024) in error.value.body["message"]
    assert [f.id for f in client.files.list().data] == [exact.id]
    fits = client.files.create(file=("fits.bin", b"y" * (1024 * 1024)), purpose="assistants")
    assert fits.bytes == 1024 * 1024  # over the 64 KiB body limit, under the upload limit
    with pytest.raises(openai.APIStatusError) as error:
        client.vector_stores.search(client.vector_stores.create().id, query="word " * 20_000)
    assert error.value.status_code == 413  # JSON bodies keep their own limit


def store_files_directly(database_url: str, tenant_name: str, texts: list[bytes]) -> list[str]:
    """Files as POST /v1/files stores them (uploads.store_file), a thousand per transaction: what is under
    test is their ingestion, and 10,000 uploads through HTTP took longer than ingesting them."""
    from orchestrator.adapters.ports import InMemoryBus, InMemoryQueue
    from orchestrator.context import Context
    from orchestrator.db.connection import make_engine, make_sessionmaker
    from orchestrator.db.models import Tenant
    from orchestrator.files import uploads
    from orchestrator.settings import Settings

    settings = Settings(DATABASE_URL=database_url)
    engine = make_engine(settings, pool_size=1)
    ctx = Context(settings, make_sessionmaker(engine), InMemoryQueue(), InMemoryBus())
    ids = []
    try:
        for start in range(0, len(texts), 1000):
            with ctx.uow() as uow:
                tenant = uow.session.query(Tenant).filter_by(name=tenant_name).one()
                for index, data in enumerate(texts[start : start + 1000], start):
                    row = uploads.store_file(
                        uow,
                        ctx,
                        tenant.id,
                        filename=f"doc{index}.txt",
                        purpose="assistants",
                        source=io.BytesIO(data),
                    )
                    ids.append(row.id)
                uow.commit()
    finally:
        engine.dispose()
    return ids


def ingestion_tally(database_url: str, store_id: str) -> dict:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            statuses = dict(
                connection.execute(
                    text(
                        "SELECT status, count(*) FROM vector_store_files WHERE vector_store_id = :s GROUP BY status"
                    ),
                    {"s": store_id},
                ).all()
            )
            leased = connection.execute(
                text("SELECT count(*) FROM chunk_sets WHERE lease_owner IS NOT NULL")
            ).scalar_one()
            return {"statuses": statuses, "leased": leased}
    finally:
        engine.dispose()


@pytest.mark.timeout(900)
def test_ten_thousand_small_files_with_a_worker_killed_midway_each_end_completed_with_chunks_stored_once(
    make_stack,
):
    stack = make_stack(
        workers=1,
        **FAST_FAILOVER,
        ORCHESTRATOR_REQUEUE_AFTER_SECONDS="2",
        ORCHESTRATOR_LOG_LEVEL="WARNING",  # not two lines per task
        ORCHESTRATOR_INGEST_CONCURRENCY="16",  # waiting on commits more than working
        # Commits need not wait for the WAL's flush: what is under test is a worker's death, which a commit
        # survives either way (Postgres itself is not restarted here); 20,000 commits waiting on fsync were
        # most of this test's time.
        PGOPTIONS="-c synchronous_commit=off",
    )
    client = sdk(stack)
    database = stack.env["DATABASE_URL"]
    line = " ".join(f"{word}{index % 89}" for index, word in enumerate(WORDS * 3))
    texts = [f"doc{n} {(line + ' ') * (6 + n % 7)}".encode() for n in range(10_000)]  # 2.3–4.6 KB
    started = time.monotonic()
    file_ids = store_files_directly(database, "faults", texts)
    stored = time.monotonic()
    store = client.vector_stores.create(name="ten thousand")
    # One batch (up to 10,000 files): attached in seconds, then 10,000 tasks are sent before it answers.
    batch = client.vector_stores.file_batches.create(store.id, file_ids=file_ids, timeout=300)
    # Kill the worker (supervisor, its processes and their parsing processes) with sets in its hands.
    wait_for(
        lambda: (
            (tally := ingestion_tally(database, store.id))["statuses"].get("completed", 0) >= 2000
            and tally["leased"] > 0
        ),
        timeout=300,
        interval=0.05,
    )
    stack.processes["worker0"].kill()
    killed = time.monotonic()
    stack.start_worker("worker1")
    wait_for(
        lambda: ingestion_tally(database, store.id)["statuses"] == {"completed": 10_000},
        timeout=600,
        interval=0.5,
    )
    print(
        f"10,000 files: stored directly in {stored - started:.0f} s, worker killed at {killed - started:.0f} s,"
        f" all completed at {time.monotonic() - started:.0f} s"
    )
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            sets = connection.execute(
                text(
                    "SELECT cs.status, cs.attempts, cs.chunk_count, count(c.id) AS stored,"
                    " count(DISTINCT c.seq) AS seqs FROM chunk_sets cs LEFT JOIN chunks c ON c.chunk_set_id = cs.id"
                    " GROUP BY cs.id"
                )
            ).all()
    finally:
        engine.dispose()
    assert len(sets) == 10_000 and {row.status for row in sets} == {"completed"}
    assert all(row.stored == row.seqs == row.chunk_count >= 1 for row in sets)  # each chunk stored once
    assert any(row.attempts >= 2 for row in sets)  # some were in the killed worker's hands
    done = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
    counts = done.file_counts
    assert (done.status, counts.completed, counts.in_progress, counts.failed) == ("completed", 10_000, 0, 0)
    assert client.vector_stores.search(store.id, query="doc9999").data
