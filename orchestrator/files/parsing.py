"""Parse one chunk set's file in a parsing process (retrieval/child.py, lent by parser_pool.py) and wait for
it without working.

The process gets the file's bytes (or its text, extracted before) in a scratch directory and the limits
from the settings: address space (`parse_memory_mb`, for the process), CPU seconds and wall-clock seconds
(`parse_timeout_seconds`, for each file). It parses holding one of the machine's parsing slots
(parse_slots.py), which bound all the parsing processes together (`parse_memory_total_mb`). While it waits
for a slot and while it parses, the caller's `heartbeat` is called every `beat` seconds (the lease stays
ours); waiting is `select`, which gevent makes cooperative, so a worker's event loop keeps running.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.domain.retrieval import IngestError
from orchestrator.files import parse_slots, parser_pool
from orchestrator.files.retrieval import child, extract
from orchestrator.settings import Settings


class ParseFailed(Exception):
    """The file cannot be ingested: `code` is the store file's last_error code."""

    def __init__(self, code: IngestError, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Parsed:
    chunks: Path  # JSON lines {"t": text, "n": tokens}
    text: Path | None  # the extracted text, when it was extracted now (None: it was given)


def parse(
    settings: Settings,
    scratch: Path,
    *,
    filename: str,
    source: Iterator[bytes],
    is_text: bool,
    max_tokens: int,
    overlap: int,
    heartbeat: Callable[[], None],
    beat: float,
) -> Parsed:
    """Write `source` (the file's bytes, or its text when `is_text`) to `scratch`, then extract and chunk it
    in the child. Raises ParseFailed for a file that cannot be ingested."""
    given = scratch / ("text.txt" if is_text else "input")
    with given.open("wb") as out:
        for piece in source:
            out.write(piece)
    job = {
        "filename": filename,
        "input": None if is_text else str(given),
        "text_in": str(given) if is_text else None,
        "text_out": str(scratch / "extracted.txt"),
        "chunks_out": str(scratch / "chunks.jsonl"),
        "max_tokens": max_tokens,
        "overlap": overlap,
        "cpu_seconds": settings.parse_timeout_seconds,
    }
    if _cheap(given, filename, is_text):
        try:
            child.run(job)  # here: a small plain text costs less than sending it to a parsing process
            return Parsed(Path(job["chunks_out"]), None if is_text else Path(job["text_out"]))
        except Exception:  # noqa: BLE001  (anything odd is parsed again where it is contained)
            pass
    pool = parser_pool.pool(_setup(settings), settings.parse_processes)
    status, reason = pool.run(job, settings.parse_timeout_seconds, heartbeat, beat)
    _check(status, reason, settings)
    return Parsed(Path(job["chunks_out"]), None if is_text else Path(job["text_out"]))


INLINE_BYTES = 64 * 1024
# tiktoken's merges grow with the square of a run of characters without a space: a file with a run this long
# is parsed in a parsing process, where its time is limited.
LONGEST_RUN = re.compile(rb"\S{1000}")


def _cheap(given: Path, filename: str, is_text: bool) -> bool:
    """Small plain text without long runs: parsed in the worker itself, bounded in time and memory by its
    size (every other file goes to a parsing process, where its limits hold)."""
    if given.stat().st_size > INLINE_BYTES or not (is_text or extract.is_plain_text(given, filename)):
        return False
    return LONGEST_RUN.search(given.read_bytes()) is None


def _setup(settings: Settings) -> dict:
    """What a parsing process is started with: all of its files share it."""
    return {
        "memory_mb": settings.parse_memory_mb,
        "slots_dir": str(parse_slots.prepared(settings)),
        "slots": parse_slots.count(settings),
        "recycle_files": settings.parse_recycle_files,
        "recycle_mb": settings.parse_recycle_mb,
    }


def _check(status: int, reason: str, settings: Settings) -> None:
    if status == 0:
        return
    if status == child.UNSUPPORTED:
        raise ParseFailed(IngestError.UNSUPPORTED_FILE, reason or "The file type is not supported.")
    if status == child.INVALID:
        raise ParseFailed(IngestError.INVALID_FILE, reason or "The file could not be parsed.")
    if reason == parser_pool.TIMED_OUT:
        raise ParseFailed(
            IngestError.INVALID_FILE,
            f"The file took longer than {settings.parse_timeout_seconds:g} s to parse.",
        )
    if status < 0:  # the child died at a limit of its own: CPU seconds (SIGXCPU) or memory (an abort)
        raise ParseFailed(
            IngestError.INVALID_FILE,
            f"The file could not be parsed within the limits ({settings.parse_timeout_seconds:g} s of CPU, "
            f"{settings.parse_memory_mb} MB of memory).",
        )
    raise RuntimeError(f"the parsing child failed with status {status}: {reason}")
