"""The sandbox in this process: jailed interpreters per session, with the limits of the settings.

`orchestrator dev` calls it directly; the `orchestrator sandbox` service serves it over HTTP. It decides
everything about an execution: which session, whether that session is a restarted one, which input files
must be copied in, how many executions run at once (ORCHESTRATOR_CODE_CONCURRENCY).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from orchestrator.domain.errors import SandboxUnavailable
from orchestrator.sandbox import cgroup, seccomp
from orchestrator.sandbox.interpreter import Interpreter, JailFailure
from orchestrator.sandbox.jail import find_bwrap, find_setpriv
from orchestrator.sandbox.ledger import Ledger
from orchestrator.sandbox.limits import Limits
from orchestrator.sandbox.port import Execution, InputFile, Outcome
from orchestrator.sandbox.registry import Session, Sessions
from orchestrator.sandbox.report import execution_from
from orchestrator.sandbox.runtime import Runtime, RuntimeUnusable, resolve_runtime
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

PRUNE_SECONDS = 3600.0
INSTALL = (
    "Install it: `apt-get install bubblewrap` (Debian, Ubuntu), `dnf install bubblewrap` (Fedora), "
    "`apk add bubblewrap` (Alpine)."
)


@dataclass(frozen=True)
class FileDigest:
    """An input file named by its digest alone: the caller expects the session to have it already."""

    name: str
    sha256: str


class MissingFiles(Exception):
    """The session lacks these input files (or has other contents under their names): send them."""

    def __init__(self, names: list[str]):
        super().__init__(f"The session needs these files: {', '.join(names)}")
        self.names = names


@dataclass(frozen=True)
class Walls:
    """What this host lets the jail have beyond its namespaces, found once (docs/sandbox.md)."""

    cgroups: cgroup.Cgroups | None  # None: memory is bounded per process and sampled, see `why`
    syscall_filter: bytes | None  # None: this architecture has no filter
    notes: tuple[str, ...] = ()  # what is missing, and why

    def describe(self) -> str:
        memory = (
            f"a memory cgroup per session (v{self.cgroups.version}, under {self.cgroups.parent})"
            if self.cgroups is not None
            else "no cgroup, memory bounded per process and sampled"
        )
        return memory + (
            "; a system call filter" if self.syscall_filter is not None else "; no system call filter"
        )


class LocalSandbox:
    """The CodeSandbox port, run here. Thread- and gevent-safe; call `shutdown()` to end every session."""

    def __init__(self, settings: Settings, *, runtime: Runtime | None = None):
        self.limits = Limits.from_settings(settings)
        self.sessions = Sessions(
            idle_seconds=settings.code_session_idle_seconds, max_sessions=settings.code_max_sessions
        )
        self.ledger = Ledger(settings.code_state_dir)
        self._python = settings.code_python
        self._cgroup_mode = settings.code_cgroup
        self._runtime = runtime
        self._walls: Walls | None = None
        self._slots = threading.BoundedSemaphore(settings.code_concurrency)
        self._lock = threading.Lock()
        self._sweeper: threading.Thread | None = None
        self._stopping = threading.Event()

    def execute(self, session_id: str, code: str, files: Sequence[InputFile] = ()) -> Execution:
        return self.run(session_id, code, files)

    def run(self, session_id: str, code: str, files: Sequence[InputFile | FileDigest] = ()) -> Execution:
        """Like `execute`, but files may be digests only; raises MissingFiles for those it lacks."""
        self._start_sweeper()
        wait = self.limits.timeout_seconds  # as long as one execution may take
        with self.sessions.hold(session_id, wait) as session, self._slot(wait):
            self._ensure_started(session)
            copies = _to_copy(session, files)
            restarted, session.restarted = session.restarted, False
            run = session.interpreter.run(code, copies)
            if run.died is not None or run.lingering or (run.header or {}).get("stray"):
                session.discard()  # the next execution starts afresh, and says so
                session.restarted = True
            elif run.header is not None and run.header.get("kind") != Outcome.DISK:
                session.digests.update((f.name, f.sha256) for f in copies)
            self.ledger.touch(session_id)
            return execution_from(run, self.limits, restarted=restarted)

    def close(self, session_id: str) -> None:
        """Discard the session; its id is forgotten too, so its next use is a new session, not a lost one."""
        self.sessions.discard(session_id)
        self.ledger.forget(session_id)

    def check(self) -> Execution:
        """Run `print(1)` in a throwaway jail: proves bwrap, the runtime and the driver work here."""
        interpreter = self._interpreter()
        try:
            interpreter.start()
            return execution_from(interpreter.run("print(1)", ()), self.limits, restarted=False)
        except JailFailure as error:
            raise SandboxUnavailable(f"The code sandbox cannot start a jail: {error}") from None
        finally:
            interpreter.kill()

    def shutdown(self) -> None:
        self._stopping.set()
        self.sessions.close_all()

    def expire(self) -> int:
        return self.sessions.expire()

    # Sessions

    def _ensure_started(self, session: Session) -> None:
        if session.interpreter is not None and session.interpreter.alive:
            return
        if session.interpreter is not None or (session.fresh and self.ledger.seen(session.id)):
            session.restarted = True  # it existed: lost to a crash, a limit, expiry or a restart
        session.discard()
        session.fresh = False
        interpreter = self._interpreter()
        try:
            interpreter.start()
        except JailFailure as error:
            raise SandboxUnavailable(f"The code sandbox could not start an interpreter: {error}") from None
        session.interpreter = interpreter

    def _interpreter(self) -> Interpreter:
        bwrap = find_bwrap()
        if bwrap is None:
            raise SandboxUnavailable(
                f"The code sandbox needs bubblewrap (`bwrap`), which is not installed. {INSTALL}"
            )
        walls = self.walls
        return Interpreter(
            self._resolved_runtime(),
            self.limits,
            bwrap=bwrap,
            cgroups=walls.cgroups,
            syscall_filter=walls.syscall_filter,
            setpriv=find_setpriv(),
        )

    @property
    def runtime(self) -> Runtime:
        """The interpreter's mounts, asked of it once (on first use)."""
        return self._resolved_runtime()

    @property
    def walls(self) -> Walls:
        """The cgroups and the system call filter this host allows, found once (on first use)."""
        with self._lock:
            if self._walls is None:
                self._walls = self._find_walls()
            return self._walls

    def _find_walls(self) -> Walls:
        notes = []
        try:
            cgroups = cgroup.find(self._cgroup_mode)
        except cgroup.CgroupUnavailable as reason:
            if self._cgroup_mode == "required":
                raise SandboxUnavailable(
                    f"The code sandbox has no memory cgroup (ORCHESTRATOR_CODE_CGROUP=required): {reason}"
                ) from None
            cgroups = None
            notes.append(f"no memory cgroup per session: {reason}")
        try:
            syscall_filter = seccomp.program(cgroup=cgroups is not None)
        except seccomp.Unsupported as reason:
            syscall_filter = None
            notes.append(str(reason))
        for note in notes:
            log.warning("code sandbox: %s (docs/sandbox.md)", note)
        return Walls(cgroups, syscall_filter, tuple(notes))

    def _resolved_runtime(self) -> Runtime:
        with self._lock:
            if self._runtime is None:
                try:
                    self._runtime = resolve_runtime(self._python)
                except RuntimeUnusable as error:
                    raise SandboxUnavailable(f"The code sandbox has no usable Python: {error}") from None
            return self._runtime

    @contextlib.contextmanager
    def _slot(self, wait: float) -> Iterator[None]:
        if not self._slots.acquire(timeout=wait):
            raise SandboxUnavailable("Every code sandbox slot stayed busy; try again.")
        try:
            yield
        finally:
            self._slots.release()

    # Expiry

    def _start_sweeper(self) -> None:
        with self._lock:
            if self._sweeper is None and not self._stopping.is_set():
                self._sweeper = threading.Thread(target=self._sweep, name="sandbox-expiry", daemon=True)
                self._sweeper.start()

    def _sweep(self) -> None:
        interval = min(60.0, max(0.1, self.sessions.idle_seconds / 4))
        pruned_at = 0.0
        while not self._stopping.wait(interval):
            try:
                expired = self.sessions.expire()
                if expired:
                    log.info("sandbox sessions expired", extra={"count": expired})
                if time.monotonic() - pruned_at > PRUNE_SECONDS:
                    pruned_at = time.monotonic()
                    self.ledger.prune()
            except Exception:
                log.exception("sandbox expiry sweep failed")


def _to_copy(session: Session, files: Sequence[InputFile | FileDigest]) -> list[InputFile]:
    """The input files the session lacks; MissingFiles if any of those came as a digest only."""
    latest = {f.name: f for f in files}
    copies = [f for f in latest.values() if session.digests.get(f.name) != f.sha256]
    missing = [f.name for f in copies if not isinstance(f, InputFile)]
    if missing:
        raise MissingFiles(missing)
    return copies
