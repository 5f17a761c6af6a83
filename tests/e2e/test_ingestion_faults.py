"""Ingestion with real processes: a worker SIGKILLed mid-ingestion, and uploads past their own limit."""

from __future__ import annotations

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
