"""Files and vector stores: the closed sets of statuses and codes, their lifecycles, and the rules that need
no I/O.

file           uploaded bytes; `status` is `processed` once stored (the SDK's wait helper ends there)
vector store   a set of files to search; `expired` / `in_progress` / `completed`, derived from its files
store file     one file in one store: `in_progress` until its chunk set is ingested, then `completed` or
               `failed` (with `last_error`), or `cancelled` by its batch
chunk set      the text of one file cut one way (chunk size, overlap, embedding model), shared by every
               store file that asks for the same cut: the unit of ingestion work, held under a lease

Files, store files and chunk sets each have one table of allowed moves (a `Lifecycle`); every status set
below is derived from it, the stores' guarded updates take their source statuses from it, and the
database checks the columns hold the closed sets (db/retrieval_models.py). A vector store's and a batch's
statuses are not stored: they are derived from their files' (`store_status`, `batch_status`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar


class FilePurpose(StrEnum):
    ASSISTANTS = "assistants"
    ASSISTANTS_OUTPUT = "assistants_output"
    BATCH = "batch"
    FINE_TUNE = "fine-tune"
    VISION = "vision"
    USER_DATA = "user_data"
    EVALS = "evals"


# What a client may upload; `assistants_output` files are made by the run engine (code_interpreter).
UPLOAD_PURPOSES = tuple(p.value for p in FilePurpose if p is not FilePurpose.ASSISTANTS_OUTPUT)


class FileStatus(StrEnum):
    UPLOADED = "uploaded"
    PROCESSED = "processed"
    ERROR = "error"


class StoreStatus(StrEnum):
    EXPIRED = "expired"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class StoreFileStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class BatchStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class ChunkSetStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


S = TypeVar("S", bound=StrEnum)


class Lifecycle(Generic[S]):
    """A closed set's table of allowed moves: `moves[source]` are the statuses `source` may move to."""

    def __init__(self, moves: Mapping[S, frozenset[S]]):
        self.moves = dict(moves)
        # Statuses something can still leave.
        self.unfinished: frozenset[S] = frozenset(self.moves)

    def sources_of(self, target: S) -> frozenset[S]:
        """Every status from which `target` may be entered: the guard of a move."""
        return frozenset(source for source, targets in self.moves.items() if target in targets)

    def allows(self, source: S, target: S) -> bool:
        return target in self.moves.get(source, frozenset())


# An upload is stored before its row is written, so files are created `processed`; `uploaded` and `error`
# are the SDK's (fine-tuning files), kept so the column holds the whole closed set.
FILE = Lifecycle({FileStatus.UPLOADED: frozenset({FileStatus.PROCESSED, FileStatus.ERROR})})
# One that failed for a passing reason (server_error) is ingested again when a store asks for it again.
CHUNK_SET = Lifecycle(
    {
        ChunkSetStatus.IN_PROGRESS: frozenset({ChunkSetStatus.COMPLETED, ChunkSetStatus.FAILED}),
        ChunkSetStatus.FAILED: frozenset({ChunkSetStatus.IN_PROGRESS}),
    }
)
# A store file's own moves: its chunk set ended, or its batch was cancelled. A file added again to a store
# where it failed or was cancelled is attached anew (its status follows the chunk set, as a new one's).
STORE_FILE = Lifecycle(
    {
        StoreFileStatus.IN_PROGRESS: frozenset(
            {StoreFileStatus.COMPLETED, StoreFileStatus.FAILED, StoreFileStatus.CANCELLED}
        )
    }
)
# Statuses a store file keeps when its file is added to the store again.
STORE_FILE_KEPT = STORE_FILE.unfinished | {StoreFileStatus.COMPLETED}
# A worker may hold a lease on a chunk set only while it is being ingested.
CHUNK_SET_WORKABLE = CHUNK_SET.sources_of(ChunkSetStatus.COMPLETED)
# How a chunk set's status carries over to the store files that wait for it.
STORE_FILE_FOLLOWS: dict[ChunkSetStatus, StoreFileStatus] = {
    ChunkSetStatus.IN_PROGRESS: StoreFileStatus.IN_PROGRESS,
    ChunkSetStatus.COMPLETED: StoreFileStatus.COMPLETED,
    ChunkSetStatus.FAILED: StoreFileStatus.FAILED,
}


class IngestError(StrEnum):
    """`last_error.code` of a store file (the SDK's closed set)."""

    SERVER_ERROR = "server_error"
    UNSUPPORTED_FILE = "unsupported_file"
    INVALID_FILE = "invalid_file"


@dataclass(frozen=True)
class Chunking:
    """How a file's text is cut: windows of `max_tokens` tokens, each sharing `overlap` with the last."""

    max_tokens: int = 800
    overlap: int = 400

    def wire(self, *, auto: bool = False) -> dict:
        if auto:
            return {"type": "auto"}
        static = {"max_chunk_size_tokens": self.max_tokens, "chunk_overlap_tokens": self.overlap}
        return {"type": "static", "static": static}


AUTO_CHUNKING = Chunking(800, 400)
# A thread's store made for message attachments expires this long after its last activity (as hosted).
THREAD_STORE_DAYS = 7
SECONDS_PER_DAY = 86_400
# Files in one file batch: as many as a store holds (hosted: 10,000 per store), since the SDK's
# upload_and_poll uploads every file before it creates the batch (a lower cap fails only after that).
MAX_BATCH_FILES = 10_000
# Attempts at one chunk set before it is failed with server_error (a crash or a dead dependency each time).
MAX_INGEST_ATTEMPTS = 5


def counts(statuses: dict[str, int]) -> dict[str, int]:
    """`file_counts` from a count of rows per status (computed from the rows, never stored)."""
    shown = {status.value: statuses.get(status.value, 0) for status in StoreFileStatus}
    return {**shown, "total": sum(shown.values())}


def store_status(file_counts: dict[str, int], expires_at: int | None, now: int) -> StoreStatus:
    if expires_at is not None and expires_at <= now:
        return StoreStatus.EXPIRED
    if file_counts["in_progress"]:
        return StoreStatus.IN_PROGRESS
    return StoreStatus.COMPLETED


def batch_status(file_counts: dict[str, int], cancelled: bool) -> BatchStatus:
    if cancelled:
        return BatchStatus.CANCELLED
    if file_counts["in_progress"]:
        return BatchStatus.IN_PROGRESS
    if file_counts["total"] and file_counts["failed"] == file_counts["total"]:
        return BatchStatus.FAILED
    return BatchStatus.COMPLETED
