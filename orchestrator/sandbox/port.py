"""What the run engine sees of the sandbox: one call that runs code in a thread's session, and its result.

    sandbox = make_sandbox(settings)           # SandboxClient, or LocalSandbox when no URL is set
    result = sandbox.execute(thread_id, code, [InputFile("data.csv", data)])
    result.logs, result.error, result.images, result.files, result.session_restarted

Both implementations are safe to call from a gevent worker: the client's HTTP calls are socket I/O that
gevent's patching makes cooperative, and the in-process sandbox waits on its pipes through `selectors`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

# A file name in /mnt/data: one path component, as the Files API keeps upload names.
_FORBIDDEN = ("/", "\x00")


class Outcome(StrEnum):
    """How an execution ended."""

    OK = "ok"  # ran to its end
    ERROR = "error"  # raised an exception: `error` is its traceback
    TIMEOUT = "timeout"  # ran past the wall-time limit
    CPU = "cpu"  # used more CPU time than allowed
    MEMORY = "memory"  # ran out of memory (MemoryError, or its processes together over the limit)
    PROCESSES = "processes"  # could not start a process or thread: the process limit
    FILE_SIZE = "file_size"  # wrote a file past the file-size limit
    DISK = "disk"  # /mnt/data or /tmp is full
    OUTPUT = "output"  # printed more than the output limit
    CRASHED = "crashed"  # the interpreter died; the session's state is gone


@dataclass(frozen=True, eq=False)
class InputFile:
    """A file to place at /mnt/data/NAME before the code runs (skipped when the session already has it)."""

    name: str
    data: bytes

    def __post_init__(self) -> None:
        check_name(self.name)

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class OutputFile:
    """A file the execution created or changed in /mnt/data; `name` is its path relative to /mnt/data."""

    name: str
    data: bytes
    mime: str


@dataclass(frozen=True)
class Execution:
    """The result of running code once.

    logs: stdout and stderr interleaved as printed, cut at the output limit with a marker.
    error: None on success; the traceback, or a sentence saying which limit stopped the code.
    images: PNG bytes of the figures the code showed (or left open), then of PNG files it saved.
    files: files created or changed in /mnt/data, within the return limit; `omitted` names the rest.
    session_restarted: the session had existed and its variables and files are gone (it expired, a limit
        or a crash ended its interpreter, or the sandbox restarted): the code ran in a fresh one.
    """

    logs: str
    error: str | None
    outcome: Outcome
    images: tuple[bytes, ...] = ()
    files: tuple[OutputFile, ...] = ()
    omitted: tuple[str, ...] = ()
    session_restarted: bool = False


class CodeSandbox(Protocol):
    def execute(self, session_id: str, code: str, files: Sequence[InputFile] = ()) -> Execution:
        """Run `code` in the session's interpreter (started if needed), after copying `files` in.

        One execution at a time per session (a second call waits). Raises SandboxUnavailable when the
        code could not be run at all; anything the code does is reported in the Execution.
        """

    def close(self, session_id: str) -> None:
        """Discard the session now: its interpreter, variables and files. Unknown ids are ignored."""


def check_name(name: str) -> str:
    """A file name usable as /mnt/data/NAME, or ValueError."""
    if not name or name in (".", "..") or any(c in name for c in _FORBIDDEN) or len(name.encode()) > 255:
        raise ValueError(f"{name!r} is not a usable file name in /mnt/data")
    return name


def safe_name(filename: str, fallback: str) -> str:
    """Turn any uploaded file name into one `InputFile` accepts (the last path component, cleaned), or
    `fallback` when nothing usable is left of it (`.`, `..`, empty)."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "").strip()
    name = name.encode()[:255].decode(errors="ignore")
    return name if name not in ("", ".", "..") else fallback


def mount_names(uploads: Sequence[tuple[str, str]]) -> list[str]:
    """A distinct /mnt/data name for each (file id, uploaded name), in order: the upload's own name where
    it is usable and not taken yet, else the file id (before the name, when only the name is taken)."""
    names: list[str] = []
    for file_id, filename in uploads:
        name = safe_name(filename, file_id)
        if name in names:
            name = safe_name(f"{file_id}-{name}", file_id)
        names.append(name)
    return names
