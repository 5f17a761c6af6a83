"""Ingesting one chunk set, durably: the Celery task `orchestrator.ingest` (and `orchestrator dev`'s
ingestion threads) call `ingest(ctx, chunk_set_id)`. The set is durable work leased like a run: its store
is db/chunk_sets.py, its lease is kept by the process's LeaseKeeper (db/keeper.py), and a write that
finds the set moved on raises StaleWrite, as a run's does.

    claim the lease and read the file (chunk_sets.claim; another holder or a finished set: nothing to do),
    │  held by the process's LeaseKeeper until the set ends (one renewal per interval for all it holds)
    ├─ no chunks stored yet: extract (once per file; the text is kept) and cut, in a parsing process of the
    │  worker's pool (parser_pool.py), stopped as soon as the hold is lost; then store every chunk in one
    │  transaction (chunk_sets.fence), which completes the set too when there is nothing to embed
    ├─ an embedding model: embed the chunks that have no vector yet, a batch per transaction (fenced)
    └─ chunk_sets.complete: the set and all its in-progress store files, in one transaction

A small file without embeddings costs two transactions: the claim, and its chunks stored with the
completion.

A worker killed anywhere loses only what it had not committed: the lease lapses, the sweep enqueues the
set again, and the next worker carries on from the stored state (chunks are stored all at once or not at
all, and (chunk_set_id, seq) is unique, so nothing is doubled). A file that cannot be parsed fails every
store file that waits for it, with `unsupported_file` or `invalid_file`; a failure of ours (a dead
dependency, a crash) is retried up to MAX_INGEST_ATTEMPTS times, then fails with `server_error`.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import chunk_sets
from orchestrator.db.keeper import Hold
from orchestrator.db.retrieval_models import Chunk, File
from orchestrator.domain.errors import StaleWrite
from orchestrator.domain.retrieval import MAX_INGEST_ATTEMPTS, IngestError
from orchestrator.files import lexical_index, parsing, store_files, uploads
from orchestrator.providers.embeddings import EmbeddingError, embedder_for

log = logging.getLogger(__name__)

INSERT_BATCH = 500
EMBED_BATCH = 64


def ingest(ctx: Context, chunk_set_id: str) -> None:
    owner = ctx.leases.new_owner()
    with ctx.uow() as uow:
        now, lease = ctx.clock.now(), ctx.settings.lease_seconds
        claimed = chunk_sets.claim(uow.session, chunk_set_id, owner, now=now, lease_seconds=lease)
        if claimed is None:
            return
        start = _Start.read(uow.session, claimed)
        uow.commit()
    with ctx.leases.hold(chunk_set_id, owner, chunk_sets.LEASES) as hold:
        _Job(ctx, claimed, owner, hold).attempt(start)


@dataclass(frozen=True)
class _Start:
    """What the claim read in its transaction: the file (None: deleted) and whether chunks are stored."""

    file: Any
    chunked: bool

    @classmethod
    def read(cls, session: Session, chunk_set) -> _Start:
        file = session.execute(
            select(File.id, File.filename, File.text_bytes, File.parse_error).where(
                File.id == chunk_set.file_id
            )
        ).one_or_none()
        chunked = session.scalar(select(Chunk.id).where(Chunk.chunk_set_id == chunk_set.id).limit(1))
        return cls(file, chunked is not None)


class _Job:
    """One claimed chunk set: every write is fenced by `owner` still holding its lease, which the process's
    LeaseKeeper renews while `hold` is kept."""

    def __init__(self, ctx: Context, chunk_set, owner: str, hold: Hold):
        self.ctx, self.owner, self.hold = ctx, owner, hold
        self.id, self.file_id, self.tenant_id = chunk_set.id, chunk_set.file_id, chunk_set.tenant_id
        self.max_tokens, self.overlap = chunk_set.max_tokens, chunk_set.overlap
        self.model = chunk_set.embedding_model
        self.attempts = chunk_set.attempts

    def attempt(self, start: _Start) -> None:
        """Ingest the set to its end; a failure of ours gives the lease back for another attempt."""
        try:
            if self.attempts > MAX_INGEST_ATTEMPTS:
                message = f"Ingestion did not finish after {MAX_INGEST_ATTEMPTS} attempts."
                raise parsing.ParseFailed(IngestError.SERVER_ERROR, message)
            self.run(start)
        except StaleWrite:
            log.info("chunk set %s moved on without this worker", self.id)
        except parsing.ParseFailed as failure:
            self.fail(failure.code, failure.message)
        except Exception:
            log.exception("ingesting chunk set %s failed; it will be tried again", self.id)
            self.release()

    def run(self, start: _Start) -> None:
        if start.file is None:
            raise StaleWrite("the file was deleted")
        if not start.chunked:
            self._chunk(start.file)  # without a model, this completed the set
            if not self.model:
                return
        dimensions = self._embed() if self.model else None
        self._complete(dimensions)

    def _chunk(self, file) -> None:
        if file.parse_error:
            raise parsing.ParseFailed(IngestError(file.parse_error["code"]), file.parse_error["message"])
        blobs = self.ctx.blobs
        is_text = file.text_bytes is not None
        key = uploads.text_key(file.id) if is_text else uploads.bytes_key(file.id)
        with tempfile.TemporaryDirectory(prefix="ingest-") as scratch:
            try:
                parsed = parsing.parse(
                    self.ctx.settings,
                    Path(scratch),
                    filename=file.filename,
                    source=blobs.slices(key),
                    is_text=is_text,
                    max_tokens=self.max_tokens,
                    overlap=self.overlap,
                    heartbeat=self._still_held,
                    beat=self.ctx.leases.CHECK_SECONDS,
                )
            except parsing.ParseFailed as failure:
                if not is_text and failure.code != IngestError.SERVER_ERROR:
                    self._remember_parse_error(failure)
                raise
            self._store_chunks(parsed)

    def _store_chunks(self, parsed: parsing.Parsed) -> None:
        """The extracted text (once per file) and every chunk, in one transaction; the set's completion too
        when there is nothing to embed."""
        with self.ctx.uow() as uow:
            chunk_sets.fence(uow.session, self.id, self.owner)
            if parsed.text is not None:
                with parsed.text.open("rb") as text:
                    info = self.ctx.blobs.put(uow, self.tenant_id, uploads.text_key(self.file_id), text)
                uow.session.execute(update(File).where(File.id == self.file_id).values(text_bytes=info.size))
            uow.session.execute(delete(Chunk).where(Chunk.chunk_set_id == self.id))
            count, used = self._insert_chunks(uow.session, parsed.chunks)
            chunk_sets.fence(uow.session, self.id, self.owner, chunk_count=count, usage_bytes=used)
            lexical_index.store_postings(uow.session, self.id)
            if not self.model:
                self._completing(uow.session, None)
            uow.commit()

    def _insert_chunks(self, session: Session, path: Path) -> tuple[int, int]:
        """Insert the child's chunks in batches; returns how many, and their text's size in bytes."""
        tenant_id, rows, count, used = self.tenant_id, [], 0, 0
        with path.open(encoding="utf-8") as lines:
            for seq, line in enumerate(lines):
                piece = json.loads(line)
                row = {"chunk_set_id": self.id, "tenant_id": tenant_id, "seq": seq, "text": piece["t"]}
                rows.append({**row, "tokens": piece["n"]})
                count, used = count + 1, used + len(piece["t"].encode("utf-8"))
                if len(rows) == INSERT_BATCH:
                    session.execute(insert(Chunk), rows)
                    rows = []
        if rows:
            session.execute(insert(Chunk), rows)
        return count, used

    def _embed(self) -> int | None:
        """Vectors for the chunks that have none yet, a batch per transaction (a restart resumes here)."""
        try:
            embedder = embedder_for(self.model, self.ctx.settings)
        except EmbeddingError as error:
            raise parsing.ParseFailed(IngestError.SERVER_ERROR, str(error)) from error
        dimensions = None
        while True:
            self._still_held()
            with self.ctx.uow() as uow:
                pending = uow.session.execute(
                    select(Chunk.id, Chunk.text)
                    .where(Chunk.chunk_set_id == self.id, Chunk.vector.is_(None))
                    .order_by(Chunk.seq)
                    .limit(EMBED_BATCH)
                ).all()
            if not pending:
                return dimensions or self._stored_dimensions()
            try:
                vectors = embedder.embed([text for _id, text in pending])
            except EmbeddingError as error:
                raise RuntimeError(str(error)) from error  # retried: the endpoint may come back
            dimensions = int(vectors.shape[1])
            self._store_vectors(pending, vectors)

    def _store_vectors(self, pending: list, vectors: np.ndarray) -> None:
        with self.ctx.uow() as uow:
            chunk_sets.fence(uow.session, self.id, self.owner)
            for (chunk_id, _text), vector in zip(pending, vectors, strict=True):
                uow.session.execute(
                    update(Chunk)
                    .where(Chunk.id == chunk_id)
                    .values(vector=vector.astype(np.float32).tobytes())
                )
            uow.commit()

    def _stored_dimensions(self) -> int | None:
        with self.ctx.uow() as uow:
            vector = uow.session.scalar(
                select(Chunk.vector).where(Chunk.chunk_set_id == self.id, Chunk.vector.is_not(None)).limit(1)
            )
        return len(vector) // 4 if vector else None

    def _complete(self, dimensions: int | None) -> None:
        with self.ctx.uow() as uow:
            self._completing(uow.session, dimensions)
            uow.commit()

    def _completing(self, session: Session, dimensions: int | None) -> None:
        completed = chunk_sets.complete(session, self.id, self.owner, dimensions=dimensions)
        store_files.settle(session, completed)

    def fail(self, code: IngestError, message: str) -> None:
        with self.ctx.uow() as uow:
            try:
                failed = chunk_sets.fail(uow.session, self.id, self.owner, code, message)
            except StaleWrite:
                return
            store_files.settle(uow.session, failed)
            uow.commit()

    def release(self) -> None:
        """Give the lease back after a failure of ours, so the sweep hands the set out again soon."""
        try:
            with self.ctx.uow() as uow:
                chunk_sets.release(uow.session, self.id, self.owner, now=self.ctx.clock.now())
                uow.commit()
        except Exception:
            log.warning("could not release chunk set %s; its lease will lapse", self.id, exc_info=True)

    def _still_held(self) -> None:
        """The parsing child's heartbeat, and a check before each embedding batch: the keeper found the
        lease lost (another worker took the set, or it was deleted), so stop now."""
        if self.hold.lost.is_set():
            raise StaleWrite(f"chunk set {self.id} is no longer leased by this worker")

    def _remember_parse_error(self, failure: parsing.ParseFailed) -> None:
        """A file that cannot be parsed is not parsed again for another cut."""
        with self.ctx.uow() as uow:
            error = {"code": failure.code.value, "message": failure.message}
            uow.session.execute(update(File).where(File.id == self.file_id).values(parse_error=error))
            uow.commit()
