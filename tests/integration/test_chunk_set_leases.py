"""Chunk sets are leased like runs, on Postgres and on SQLite (orchestrator dev's): the chunk set store's
claim, fence and moves (db/chunk_sets.py), guarded by the lifecycle table and the database's checks, and
the process's LeaseKeeper keeping runs and chunk sets with one statement per kind."""

from __future__ import annotations

import dataclasses
import io
import threading
import time

import pytest
from sqlalchemy import delete, event, func, select, text, update
from sqlalchemy.exc import IntegrityError

from orchestrator.db import chunk_sets, models
from orchestrator.db.blobs import DirectoryBlobStore
from orchestrator.db.retrieval_models import Chunk, ChunkSet, File
from orchestrator.domain.errors import StaleWrite
from orchestrator.domain.retrieval import CHUNK_SET, ChunkSetStatus, IngestError
from orchestrator.files import ingestion, uploads, vector_stores
from orchestrator.schemas.assistants import CreateAssistant
from orchestrator.schemas.runs import CreateThreadAndRun
from orchestrator.schemas.vector_stores import CreateVectorStore
from orchestrator.services import assistants, runs
from tests.support.polling import wait_for


def new_chunk_sets(ctx, tenant: str, count: int = 1, data: bytes = b"leased words") -> list[str]:
    """`count` chunk sets waiting to be ingested, each of a file of its own in one store."""
    file_ids = [
        uploads.upload(ctx, tenant, source=io.BytesIO(data), filename=f"{n}.txt", purpose="assistants")["id"]
        for n in range(count)
    ]
    vector_stores.create(ctx, tenant, CreateVectorStore(file_ids=file_ids))
    created, ctx.queue.ingestions[:] = list(ctx.queue.ingestions), []
    return created


def claim(ctx, chunk_set_id: str, owner: str, *, later: float = 0.0):
    with ctx.uow() as uow:
        now = ctx.clock.now() + later
        row = chunk_sets.claim(
            uow.session, chunk_set_id, owner, now=now, lease_seconds=ctx.settings.lease_seconds
        )
        uow.commit()
    return row


def chunk_set(ctx, chunk_set_id: str) -> ChunkSet | None:
    with ctx.uow() as uow:
        return uow.session.get(ChunkSet, chunk_set_id)


def test_of_two_claims_on_a_free_chunk_set_one_wins(any_ctx, any_tenant):
    (set_id,) = new_chunk_sets(any_ctx, any_tenant)
    first, second = claim(any_ctx, set_id, "first"), claim(any_ctx, set_id, "second")
    assert first is not None and first.lease_owner == "first" and second is None
    row = chunk_set(any_ctx, set_id)
    assert (row.lease_owner, row.attempts, row.status) == ("first", 1, ChunkSetStatus.IN_PROGRESS)


def test_a_lapsed_lease_is_taken_over_and_its_first_holder_can_no_longer_write(any_ctx, any_tenant):
    ctx = any_ctx
    (set_id,) = new_chunk_sets(ctx, any_tenant)
    assert claim(ctx, set_id, "first") is not None
    assert claim(ctx, set_id, "second") is None  # a live lease is left alone
    taken = claim(ctx, set_id, "second", later=ctx.settings.lease_seconds + 1)
    assert taken.lease_owner == "second" and taken.attempts == 2
    with ctx.uow() as uow, pytest.raises(StaleWrite):
        chunk_sets.fence(uow.session, set_id, "first", chunk_count=7)
    with ctx.uow() as uow, pytest.raises(StaleWrite):
        chunk_sets.complete(uow.session, set_id, "first", dimensions=None)
    with ctx.uow() as uow:
        chunk_sets.fence(uow.session, set_id, "second", chunk_count=3, usage_bytes=30)
        completed = chunk_sets.complete(uow.session, set_id, "second", dimensions=4)
        uow.commit()
    assert completed.status is ChunkSetStatus.COMPLETED and completed.lease_owner is None
    assert (completed.chunk_count, completed.usage_bytes, completed.dimensions) == (3, 30 + 3 * 4 * 4, 4)
    assert claim(ctx, set_id, "third", later=ctx.settings.lease_seconds + 1) is None  # ended: nothing to take


def test_a_move_the_lifecycle_table_does_not_allow_is_refused_and_a_status_outside_it_by_the_database(
    any_ctx, any_tenant
):
    ctx = any_ctx
    (set_id,) = new_chunk_sets(ctx, any_tenant)
    claim(ctx, set_id, "holder")
    with ctx.uow() as uow:
        failed = chunk_sets.fail(uow.session, set_id, "holder", IngestError.INVALID_FILE, "not a document")
        # A writer that still names itself the holder of the failed set (the owner guard alone would pass):
        uow.session.execute(update(ChunkSet).where(ChunkSet.id == set_id).values(lease_owner="holder"))
        uow.commit()
    assert failed.status is ChunkSetStatus.FAILED and failed.last_error["code"] == "invalid_file"
    assert not CHUNK_SET.allows(ChunkSetStatus.FAILED, ChunkSetStatus.COMPLETED)
    with ctx.uow() as uow, pytest.raises(StaleWrite):
        chunk_sets.complete(uow.session, set_id, "holder", dimensions=None)
    assert chunk_set(ctx, set_id).status is ChunkSetStatus.FAILED
    for table in ("files", "chunk_sets", "vector_store_files"):  # past the enum's own check, in SQL
        with ctx.uow() as uow, pytest.raises(IntegrityError):
            bogus = text(f"UPDATE {table} SET status = 'bogus' WHERE tenant_id = :tenant")
            uow.session.execute(bogus, {"tenant": any_tenant})


def test_releasing_gives_the_lease_back_and_the_sweep_hands_the_set_out_again(any_ctx, any_tenant):
    ctx = any_ctx
    (set_id,) = new_chunk_sets(ctx, any_tenant)
    claim(ctx, set_id, "holder")
    with ctx.uow() as uow:
        chunk_sets.release(uow.session, set_id, "someone else", now=ctx.clock.now())  # not theirs: no-op
        uow.commit()
    assert chunk_set(ctx, set_id).lease_owner == "holder"
    with ctx.uow() as uow:
        chunk_sets.release(uow.session, set_id, "holder", now=ctx.clock.now() - 60)
        uow.commit()
    assert chunk_set(ctx, set_id).lease_owner is None
    with ctx.uow() as uow:
        stale = ctx.clock.now() - ctx.settings.requeue_after_seconds
        assert set_id in chunk_sets.requeue(uow.session, ctx.clock.now(), stale)
        uow.commit()
    assert claim(ctx, set_id, "next").attempts == 2


def test_while_the_ingestion_queue_holds_tasks_only_lapsed_leases_are_sent_again(any_ctx, any_tenant):
    """10,000 files attached at once wait in the queue for minutes: they are not lost, and sending them
    again every requeue_after_seconds only made duplicates. A lapsed lease is sent again all the same."""
    ctx = any_ctx
    waiting, lapsed = new_chunk_sets(ctx, any_tenant, count=2)
    claim(ctx, lapsed, "dead worker", later=-(ctx.settings.lease_seconds + 5))
    later = ctx.clock.now() + ctx.settings.requeue_after_seconds + 5
    with ctx.uow() as uow:
        stale = later - ctx.settings.requeue_after_seconds
        sent = chunk_sets.requeue(uow.session, later, stale, lost=False, limit=10_000)
        assert lapsed in sent and waiting not in sent
        uow.session.rollback()
    with ctx.uow() as uow:
        sent = chunk_sets.requeue(uow.session, later, stale, limit=10_000)
        assert {waiting, lapsed} <= set(sent)  # the queue is empty


def in_progress_runs(ctx, tenant: str, count: int) -> list[str]:
    """`count` runs in progress, each leased by `me:<run id>` as a turn of this process would hold it."""
    assistant = assistants.create(ctx, tenant, CreateAssistant(model="local"))
    body = CreateThreadAndRun.model_validate(
        {"assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": "hi"}]}}
    )
    run_ids = [runs.create_thread_and_run(ctx, tenant, body).run["id"] for _ in range(count)]
    with ctx.uow() as uow:
        for run_id in run_ids:
            leased = {"lease_owner": f"me:{run_id}", "lease_expires_at": ctx.clock.now() + 2}
            uow.session.execute(
                update(models.Run).where(models.Run.id == run_id).values(status="in_progress", **leased)
            )
        uow.commit()
    return run_ids


class KeeperStatements:
    """The keeper's statements on each leased table, by kind: its reads and its renewals."""

    def __init__(self, engine):
        self.seen: list[tuple[str, str]] = []
        self._engine = engine
        event.listen(engine, "before_cursor_execute", self._statement)

    def _statement(self, _conn, _cursor, statement, *_args) -> None:
        for table in ("runs", "chunk_sets"):
            if statement.startswith(f"SELECT {table}.id, {table}.status FROM {table}"):
                self.seen.append((table, "read"))
            elif statement.startswith(f"UPDATE {table} SET lease_expires_at="):
                self.seen.append((table, "renew"))

    def count(self, table: str, kind: str) -> int:
        return self.seen.count((table, kind))

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._statement)


def test_the_keeper_renews_runs_and_chunk_sets_with_one_statement_per_kind(any_ctx, any_tenant):
    ctx, keeper = any_ctx, any_ctx.leases
    run_ids = in_progress_runs(ctx, any_tenant, 6)
    set_ids = new_chunk_sets(ctx, any_tenant, 6)
    owners = {set_id: keeper.new_owner() for set_id in set_ids}
    assert all(claim(ctx, set_id, owner) for set_id, owner in owners.items())
    holds = [keeper.hold(run_id, f"me:{run_id}") for run_id in run_ids]
    holds += [keeper.hold(set_id, owner, chunk_sets.LEASES) for set_id, owner in owners.items()]
    statements = KeeperStatements(ctx.sessions.kw["bind"])
    waited = keeper.renew_every + 3 * keeper.CHECK_SECONDS
    try:
        for hold in holds:
            hold.__enter__()
        time.sleep(waited)  # the keeper's own pace is what is measured
    finally:
        for hold in holds:
            hold.__exit__(None, None, None)
        statements.close()
    # Each check is one statement per kind for all its holds: a read, or a renewal every renew_every.
    checks = statements.count("runs", "read") + statements.count("runs", "renew")
    assert 2 <= checks <= waited / keeper.CHECK_SECONDS + 1
    assert statements.count("chunk_sets", "read") == statements.count("runs", "read")
    assert statements.count("chunk_sets", "renew") == statements.count("runs", "renew") >= 1
    with ctx.uow() as uow:
        expiries = uow.session.scalars(select(ChunkSet.lease_expires_at).where(ChunkSet.id.in_(set_ids)))
        assert min(expiries) > ctx.clock.now() + ctx.settings.lease_seconds - keeper.renew_every - 1.5
    assert not any(hold.lost.is_set() or hold.cancelled.is_set() for hold in holds)


def test_a_chunk_set_taken_over_or_deleted_is_lost_to_its_hold_within_a_second(ctx, tenant):
    keeper = ctx.leases
    taken, deleted, kept = new_chunk_sets(ctx, tenant, 3)
    owners = {set_id: keeper.new_owner() for set_id in (taken, deleted, kept)}
    holds = {set_id: keeper.hold(set_id, owner, chunk_sets.LEASES) for set_id, owner in owners.items()}
    woken = {set_id: threading.Event() for set_id in holds}
    for set_id, hold in holds.items():
        claim(ctx, set_id, owners[set_id])
        hold.on_signal = woken[set_id].set
        hold.__enter__()
    try:
        with ctx.uow() as uow:
            uow.session.execute(update(ChunkSet).where(ChunkSet.id == taken).values(lease_owner="other"))
            file_id = uow.session.scalar(select(ChunkSet.file_id).where(ChunkSet.id == deleted))
            uow.session.execute(delete(File).where(File.id == file_id))
            uow.commit()
        assert woken[taken].wait(1) and woken[deleted].wait(1)
        assert not woken[kept].wait(keeper.CHECK_SECONDS * 1.2)
    finally:
        for hold in holds.values():
            hold.__exit__(None, None, None)
    assert holds[taken].lost.is_set() and holds[deleted].lost.is_set()
    assert not holds[kept].lost.is_set() and not holds[taken].cancelled.is_set()


def test_a_chunk_set_taken_over_while_its_file_is_parsed_stops_the_parse_and_writes_nothing(
    ctx, tenant, tmp_path
):
    ctx = dataclasses.replace(ctx, blobs=DirectoryBlobStore(str(tmp_path)))  # 78 MB: not into Postgres
    (set_id,) = new_chunk_sets(ctx, tenant, data=b"lorem ipsum dolor sit amet consectetur " * 2_000_000)
    ingesting = threading.Thread(target=ingestion.ingest, args=(ctx, set_id))
    ingesting.start()
    wait_for(lambda: chunk_set(ctx, set_id).lease_owner, timeout=10, interval=0.01)  # claimed
    with ctx.uow() as uow:  # another worker takes it over (its lease lapsed, say)
        uow.session.execute(
            update(ChunkSet).where(ChunkSet.id == set_id).values(lease_owner="other", attempts=2)
        )
        uow.commit()
    taken_over = time.monotonic()
    ingesting.join(10)
    # Parsing 78 MB takes the child several seconds; the keeper sees the loss within half a second and
    # the parsing heartbeat stops the child within half a second more.
    assert not ingesting.is_alive() and time.monotonic() - taken_over < 2.5
    row = chunk_set(ctx, set_id)
    assert (row.status, row.lease_owner, row.chunk_count) == (ChunkSetStatus.IN_PROGRESS, "other", 0)
    with ctx.uow() as uow:
        stored = uow.session.scalar(
            select(func.count()).select_from(Chunk).where(Chunk.chunk_set_id == set_id)
        )
        text_bytes = uow.session.scalar(select(File.text_bytes).where(File.id == row.file_id))
    assert stored == 0 and text_bytes is None
