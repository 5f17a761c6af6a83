"""Which sessions this sandbox has held, kept on disk so that a restarted sandbox can tell a lost session
(its state is gone: say so) from a new one.

One empty file per session, named by a digest of its id (ids are opaque and never stored), touched at
every execution; entries unused for `KEEP_SECONDS` are pruned. Without a usable directory the ledger
remembers nothing and every session that is not live looks new.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

KEEP_SECONDS = 30 * 24 * 3600


class Ledger:
    def __init__(self, directory: str | None):
        self.directory = Path(directory) if directory else default_directory()
        self._usable: bool | None = None

    @property
    def usable(self) -> bool:
        """Whether the directory can be written; made at the first session, not when a process that may
        never run code builds its sandbox."""
        if self._usable is None:
            try:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._usable = os.access(self.directory, os.W_OK)
            except OSError as error:
                log.warning("sandbox state directory unusable: %s", error)
                self._usable = False
        return self._usable

    def seen(self, session_id: str) -> bool:
        return self.usable and self._path(session_id).exists()

    def touch(self, session_id: str) -> None:
        if self.usable:
            with contextlib.suppress(OSError):
                self._path(session_id).touch()

    def forget(self, session_id: str) -> None:
        if self.usable:
            with contextlib.suppress(OSError):
                self._path(session_id).unlink()

    def prune(self, keep_seconds: float = KEEP_SECONDS) -> int:
        """Forget sessions unused for `keep_seconds`; returns how many."""
        if not self.usable:
            return 0
        cutoff, pruned = time.time() - keep_seconds, 0
        for entry in os.scandir(self.directory):
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    pruned += 1
        return pruned

    def _path(self, session_id: str) -> Path:
        return self.directory / hashlib.sha256(session_id.encode()).hexdigest()


def default_directory() -> Path:
    return Path(tempfile.gettempdir()) / f"orchestrator-sandbox-{os.geteuid()}"
