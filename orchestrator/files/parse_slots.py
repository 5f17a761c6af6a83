"""The parsing children's memory, bounded in total on a machine, not only each.

Every parsing process parses holding a slot: an exclusive lock (flock) on one of the lock files in
ORCHESTRATOR_PARSE_SLOTS_DIR, of which there are ORCHESTRATOR_PARSE_MEMORY_TOTAL_MB //
ORCHESTRATOR_PARSE_MEMORY_MB (at least one; a total of 0 means half of the machine's memory). Each process is
held to ORCHESTRATOR_PARSE_MEMORY_MB of address space, so all of them parsing together to the total, whatever
the number of worker processes and ingestion tasks in flight: the others wait for a slot, their leases kept.
An idle parsing process holds no slot (it is small: the memory a file takes is given back when it retires,
past ORCHESTRATOR_PARSE_RECYCLE_MB).

The parsing process takes the lock itself (retrieval/child.py `take_slot`) and gives it back after each file;
a lock lasts as long as its descriptor is open, so a slot stays taken while its process parses, even after
the worker that lent it the file was killed, and the kernel frees it when the process is gone. Nothing is ever
left locked by a process that died. `slot()` takes one from this process (for tests and tools).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from orchestrator.settings import Settings

POLL_SECONDS = 0.1  # how often a waiting task looks for a free slot (a sleep gevent makes cooperative)


def count(settings: Settings) -> int:
    """How many parsing children may run at once on this machine."""
    total = settings.parse_memory_total_mb or _physical_mb() // 2
    return max(1, total // settings.parse_memory_mb)


def directory(settings: Settings) -> Path:
    return Path(
        settings.parse_slots_dir or Path(tempfile.gettempdir()) / f"orchestrator-parse-slots-{os.geteuid()}"
    )


def prepared(settings: Settings) -> Path:
    """The slots' directory, checked (made if need be): the parsing processes lock files in it."""
    return _checked(directory(settings))


@contextlib.contextmanager
def slot(settings: Settings, heartbeat: Callable[[], None], beat: float) -> Iterator[int]:
    """A slot's open descriptor (pass it to the child), once one is free; `heartbeat` every `beat` seconds
    while waiting."""
    place = _checked(directory(settings))
    fd = _take(place, count(settings), heartbeat, beat)
    try:
        yield fd
    finally:
        os.close(fd)


def _take(place: Path, slots: int, heartbeat: Callable[[], None], beat: float) -> int:
    beaten = time.monotonic()
    while True:
        first = random.randrange(slots)  # spread the takers over the files
        for index in [*range(first, slots), *range(first)]:
            fd = os.open(place / f"slot-{index}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        time.sleep(POLL_SECONDS)
        if time.monotonic() - beaten >= beat:
            beaten = time.monotonic()
            heartbeat()


def _checked(place: Path) -> Path:
    """The directory, made if need be; refused unless it is a directory of ours (not a link planted in a
    shared temporary directory)."""
    with contextlib.suppress(FileExistsError):
        place.mkdir(mode=0o700, parents=True)
    found = os.lstat(place)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
        raise RuntimeError(f"{place} is not a directory of this user: set ORCHESTRATOR_PARSE_SLOTS_DIR")
    return place


def _physical_mb() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
