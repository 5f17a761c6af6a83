"""Leases: which worker may write a piece of durable work (a run's turn, a chunk set's ingestion). The
owner token is the fencing token of every write. The keeper is the process's heartbeat: built once per
process with its context, it renews every lease the process holds, of every kind.

A lease is taken with one guarded UPDATE (free, or lapsed) by the work's store (db/runs.py,
db/chunk_sets.py), renewed by the process's LeaseKeeper while the work goes on (one statement per
interval per kind of work, for every lease of that kind the process holds), and released by the move that
ends the work. A worker that dies simply stops renewing; the scheduler's sweep then hands the work to
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
from typing import Any

from orchestrator.adapters.ports import RunSignals
from orchestrator.db import runs
from orchestrator.db.leases import Kind
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain.clock import Clock

log = logging.getLogger(__name__)


def process_token() -> str:
    """This process, as the first part of the lease owner tokens its turns hold."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Hold:
    """One worker's hold on a lease of some `kind` (a run's, a chunk set's), kept by the process's
    LeaseKeeper. `cancelled` and `lost` are set (and `on_signal` called, from the keeper's thread) when the
    work was cancelled or the lease lost."""

    def __init__(self, keeper: LeaseKeeper, kind: Kind, item_id: str, owner: str):
        self._keeper, self.kind, self.id, self.owner = keeper, kind, item_id, owner
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self.renewed = time.monotonic()  # the claim that made this hold renewed the lease
        # Called when the work is cancelled or the lease lost, to wake the worker at once.
        self.on_signal: Callable[[], None] = lambda: None

    def __enter__(self) -> Hold:
        self._keeper.add(self)
        return self

    def __exit__(self, *_exc) -> None:
        self._keeper.remove(self)

    @property
    def key(self) -> tuple[Kind, str]:
        return self.kind, self.id

    def see(self, status: Any) -> None:
        """What the database says of the work; None: this worker no longer holds it."""
        if status in self.kind.carry_on or self.lost.is_set():
            return
        if status in self.kind.cancelled:
            if not self.cancelled.is_set():
                self.cancelled.set()
                self.on_signal()
            return
        self.lost.set()
        self.on_signal()


class LeaseKeeper:
    """The leases of all the work a process does, kept with one statement per interval and kind of work
    (db/leases.Kind), whatever their number.

    Every CHECK_SECONDS one SELECT per kind reads the held items' statuses, and every `lease_seconds / 3`
    one UPDATE per kind renews all their leases instead, in one transaction: hundreds of runs in flight cost
    two statements a second, not two per run. A cancel or expiry also nudges the process over the run
    signals (Redis), and the keeper reads that run at once; without Redis the half-second check still finds
    it. While the database is unreachable the keeper keeps trying; a hold not renewed for a whole lease is
    lost (another worker may have the work by then), so that worker writes nothing more. The thread runs
    only while something is held.
    """

    CHECK_SECONDS = 0.5

    def __init__(
        self, uow: Callable[[], UnitOfWork], signals: RunSignals, clock: Clock, lease_seconds: float
    ):
        self._uow, self._signals, self._clock = uow, signals, clock
        self.lease_seconds = lease_seconds
        self.process = process_token()
        self._holds: dict[tuple[Kind, str], Hold] = {}
        self._nudged: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = False
        self.renew_every = max(lease_seconds / 3, self.CHECK_SECONDS)

    def new_owner(self) -> str:
        """A lease owner token for one hold: unique, and naming this process for the run signals."""
        return f"{self.process}/{uuid.uuid4().hex[:12]}"

    def hold(self, item_id: str, owner: str, kind: Kind = runs.LEASES) -> Hold:
        """A hold on the lease `owner` took on `item_id` (a run unless `kind` says otherwise); kept while
        entered (`with`)."""
        return Hold(self, kind, item_id, owner)

    def add(self, hold: Hold) -> None:
        with self._lock:
            self._holds[hold.key] = hold
            if not self._listening:
                self._listening = True
                self._signals.listen(self.process, self.nudge)
            if self._thread is None:
                self._thread = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)
                self._thread.start()

    def remove(self, hold: Hold) -> None:
        with self._lock:
            if self._holds.get(hold.key) is hold:
                del self._holds[hold.key]

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
                holds = [hold for hold in holds if hold.id in nudged]
                if holds:
                    self._check(holds, renewing=False)
                continue
            checked = now
            renewing = now - renewed >= self.renew_every
            if self._check(holds, renewing=renewing) and renewing:
                renewed = now

    def _check(self, holds: list[Hold], *, renewing: bool) -> bool:
        try:
            statuses = self._read(_by_kind(holds), renewing=renewing)
        except Exception:
            log.warning("lease keeping failed for %d holds", len(holds), exc_info=True)
            self._give_up_stale(holds)
            return False
        now = time.monotonic()
        for hold in holds:
            status = statuses[hold.kind].get(hold.id)
            if renewing and status is not None:
                hold.renewed = now
            hold.see(status)
        return True

    def _give_up_stale(self, holds: list[Hold]) -> None:
        """Past a whole lease without renewal another worker may have taken the work: stop those holders."""
        now = time.monotonic()
        for hold in holds:
            if now - hold.renewed > self.lease_seconds:
                hold.see(None)

    def _read(self, by_kind: dict[Kind, list[tuple[str, str]]], *, renewing: bool) -> dict[Kind, dict]:
        """Per kind, the status of each held item this process still holds: one statement per kind, in one
        transaction, extending every held lease when `renewing`."""
        with self._uow() as uow:
            if not renewing:
                return {kind: kind.statuses(uow.session, held) for kind, held in by_kind.items()}
            until = self._clock.now() + self.lease_seconds
            statuses = {kind: kind.renew(uow.session, held, until) for kind, held in by_kind.items()}
            uow.commit()
        return statuses


def _by_kind(holds: list[Hold]) -> dict[Kind, list[tuple[str, str]]]:
    """The (id, owner) pairs held, by kind of work."""
    grouped: dict[Kind, list[tuple[str, str]]] = {}
    for hold in holds:
        grouped.setdefault(hold.kind, []).append((hold.id, hold.owner))
    return grouped
