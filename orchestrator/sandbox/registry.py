"""The live sessions of one sandbox process: one interpreter each, one execution at a time each.

A session is found or made by its opaque id and held (locked) for one execution. One idle for
ORCHESTRATOR_CODE_SESSION_IDLE_SECONDS is discarded by `expire()`, interpreter, variables and files
alike; so is the least recently used idle one when ORCHESTRATOR_CODE_MAX_SESSIONS are live and a new
one is needed. Every lock here is a `threading` lock, which gevent's patching makes cooperative.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from orchestrator.domain.errors import SandboxUnavailable
from orchestrator.sandbox.interpreter import Interpreter


@dataclass(eq=False)
class Session:
    id: str
    fresh: bool = True  # made in this process and not yet started
    interpreter: Interpreter | None = None
    digests: dict[str, str] = field(default_factory=dict)  # input file name -> sha256 last copied in
    restarted: bool = False  # a fresh interpreter replaced a lost one; not yet reported
    last_used: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def discard(self) -> None:
        if self.interpreter is not None:
            self.interpreter.kill()
            self.interpreter = None
        self.digests.clear()


class Sessions:
    def __init__(
        self, *, idle_seconds: float, max_sessions: int, clock: Callable[[], float] = time.monotonic
    ):
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    @contextlib.contextmanager
    def hold(self, session_id: str, wait: float) -> Iterator[Session]:
        """The session, locked for one execution; SandboxUnavailable if it stays busy `wait` seconds."""
        while True:
            session = self._find_or_make(session_id)
            if not session.lock.acquire(timeout=wait):
                raise SandboxUnavailable("The session is still running an earlier execution.")
            if self._sessions.get(session_id) is session:
                break
            session.lock.release()  # discarded while we waited: take the new one
        try:
            yield session
        finally:
            session.last_used = self.clock()
            session.lock.release()

    def discard(self, session_id: str) -> None:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is not None:
            with session.lock:
                session.discard()

    def expire(self) -> int:
        """Discard every session idle longer than the limit (a busy one is not idle); returns how many."""
        cutoff = self.clock() - self.idle_seconds
        with self._lock:
            idle = [s for s in self._sessions.values() if s.last_used < cutoff and not s.lock.locked()]
        return sum(self._discard_if_idle(session, cutoff) for session in idle)

    def close_all(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.discard()

    def _find_or_make(self, session_id: str) -> Session:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                self._make_room()
                session = self._sessions[session_id] = Session(session_id, last_used=self.clock())
            return session

    def _make_room(self) -> None:
        """At the limit, the least recently used session that is not running code goes."""
        if len(self._sessions) < self.max_sessions:
            return
        for session in sorted(self._sessions.values(), key=lambda s: s.last_used):
            if session.lock.acquire(blocking=False):
                del self._sessions[session.id]
                session.discard()
                session.lock.release()
                return
        raise SandboxUnavailable(f"All {self.max_sessions} sandbox sessions are running code.")

    def _discard_if_idle(self, session: Session, cutoff: float) -> bool:
        if not session.lock.acquire(blocking=False):
            return False
        try:
            with self._lock:
                if self._sessions.get(session.id) is not session or session.last_used >= cutoff:
                    return False
                del self._sessions[session.id]
            session.discard()
            return True
        finally:
            session.lock.release()
