"""Leases: which worker may write a run's turn. The owner token is the fencing token of every turn write.
The keeper is the process's heartbeat: built once per process with its context, it renews every lease the
process holds.

A lease is taken with one guarded UPDATE (free, or lapsed), renewed by the process's LeaseKeeper while the
model runs (one statement per interval for every run the process holds), and released by the transition
that ends the turn. A worker that dies simply stops renewing; the scheduler's sweep then hands the run to
another worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from orchestrator.adapters.ports import RunSignals
from orchestrator.db import runs
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain.clock import Clock
from orchestrator.domain.lifecycle import RunStatus

log = logging.getLogger(__name__)


def process_token() -> str:
    """This process, as the first part of the lease owner tokens its turns hold."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Hold:
    """One turn's hold on its run's lease, kept by the process's LeaseKeeper. `cancelled` and `lost` are set
    (and `on_signal` called, from the keeper's thread) when the run was cancelled or the lease lost."""

    def __init__(self, keeper: LeaseKeeper, run_id: str, owner: str):
        self._keeper, self.run_id, self.owner = keeper, run_id, owner
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self.renewed = time.monotonic()  # the claim that made this hold renewed the lease
        # Called when the run is cancelled or lost, to wake the turn at once.
        self.on_signal: Callable[[], None] = lambda: None

    def __enter__(self) -> Hold:
        self._keeper.add(self)
        return self

    def __exit__(self, *_exc) -> None:
        self._keeper.remove(self)

    def see(self, status: RunStatus | None) -> None:
        """What the database says of the run; None: this worker no longer owns it."""
        if status is RunStatus.IN_PROGRESS or self.lost.is_set():
            return
        if status is RunStatus.CANCELLING:
            if not self.cancelled.is_set():
                self.cancelled.set()
                self.on_signal()
            return
        self.lost.set()
        self.on_signal()


class LeaseKeeper:
    """The leases of every turn a process runs, kept with one statement per interval whatever their number.

    Every CHECK_SECONDS one SELECT reads the held runs' statuses, and every `lease_seconds / 3` one UPDATE
    renews all their leases instead: hundreds of runs in flight cost two statements a second, not two per
    run. A cancel or expiry also nudges the process over the run signals (Redis), and the keeper reads that
    run at once; without Redis the half-second check still finds it. While the database is unreachable the
    keeper keeps trying; a hold not renewed for a whole lease is lost (another worker may have the run by
    then), so that turn streams nothing more. The thread runs only while something is held.
    """

    CHECK_SECONDS = 0.5

    def __init__(
        self, uow: Callable[[], UnitOfWork], signals: RunSignals, clock: Clock, lease_seconds: float
    ):
        self._uow, self._signals, self._clock = uow, signals, clock
        self.lease_seconds = lease_seconds
        self.process = process_token()
        self._holds: dict[str, Hold] = {}
        self._nudged: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = False
        self.renew_every = max(lease_seconds / 3, self.CHECK_SECONDS)

    def new_owner(self) -> str:
        """A lease owner token for one turn: unique, and naming this process for the run signals."""
        return f"{self.process}/{uuid.uuid4().hex[:12]}"

    def hold(self, run_id: str, owner: str) -> Hold:
        return Hold(self, run_id, owner)

    def add(self, hold: Hold) -> None:
        with self._lock:
            self._holds[hold.run_id] = hold
            if not self._listening:
                self._listening = True
                self._signals.listen(self.process, self.nudge)
            if self._thread is None:
                self._thread = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)
                self._thread.start()

    def remove(self, hold: Hold) -> None:
        with self._lock:
            if self._holds.get(hold.run_id) is hold:
                del self._holds[hold.run_id]

    def nudge(self, run_id: str) -> None:
        """Look at this run now (it was cancelled or expired)."""
        with self._lock:
            self._nudged.add(run_id)
        self._wake.set()

    def _keep(self) -> None:
        renewed = checked = time.monotonic()
        while True:
            self._wake.wait(max(0.0, checked + self.CHECK_SECONDS - time.monotonic()))
            self._wake.clear()
            with self._lock:
                holds = list(self._holds.values())
                nudged, self._nudged = self._nudged, set()
                if not holds:
                    self._thread = None
                    return
            now = time.monotonic()
            if now - checked < self.CHECK_SECONDS:  # woken early: only the nudged runs
                holds = [hold for hold in holds if hold.run_id in nudged]
                if holds:
                    self._check(holds, renewing=False)
                continue
            checked = now
            renewing = now - renewed >= self.renew_every
            if self._check(holds, renewing=renewing) and renewing:
                renewed = now

    def _check(self, holds: list[Hold], *, renewing: bool) -> bool:
        try:
            statuses = (self._renew if renewing else self._statuses)(holds)
        except Exception:
            log.warning("lease keeping failed for %d runs", len(holds), exc_info=True)
            self._give_up_stale(holds)
            return False
        now = time.monotonic()
        for hold in holds:
            if renewing and hold.run_id in statuses:
                hold.renewed = now
            hold.see(statuses.get(hold.run_id))
        return True

    def _give_up_stale(self, holds: list[Hold]) -> None:
        """Past a whole lease without renewal another worker may have taken the run: stop those turns."""
        now = time.monotonic()
        for hold in holds:
            if now - hold.renewed > self.lease_seconds:
                hold.see(None)

    def _renew(self, holds: list[Hold]) -> dict[str, RunStatus]:
        """Extend every held lease in one statement; the status of each run this process still owns."""
        with self._uow() as uow:
            statuses = runs.renew(uow.session, _pairs(holds), self._clock.now() + self.lease_seconds)
            uow.commit()
        return statuses

    def _statuses(self, holds: list[Hold]) -> dict[str, RunStatus]:
        """The status of each held run this process still owns, in one read."""
        with self._uow() as uow:
            return runs.statuses(uow.session, _pairs(holds))


def _pairs(holds: list[Hold]) -> list[tuple[str, str]]:
    return [(hold.run_id, hold.owner) for hold in holds]
