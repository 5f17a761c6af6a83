"""Long-lived parsing processes (retrieval/child.py), kept by each worker process and lent to one file at a
time: starting a Python process per file cost 0.3 CPU-s, more than parsing a small file does.

    pool.run(job) ─ an idle process, or a new one ─▶ the job line on its stdin
                  ◀─ {"slot": true}   (it waits for one of the machine's parsing slots: the lease is kept)
                  ◀─ {"status", "reason", "retire"}   within `timeout` of the slot, else SIGKILL
                  ─▶ back to the idle list, unless it retires, died, or the wait was cut short

The caller's `heartbeat` is called every `beat` seconds while it waits (the lease stays ours; a heartbeat that
raises, the lease lost, kills the process). Waiting is `select`, which gevent makes cooperative, so the
worker's event loop keeps running other tasks. A process that is killed, dies, or retires (after
`parse_recycle_files` files or past `parse_recycle_mb`) is simply not given back: the next file starts
another. A worker process keeps at most `parse_processes` of them (each is a Python interpreter with the
tokenizer loaded, about 65 MB): a file waits for one to be free (parsing a small file is a small share of
ingesting it), and their memory while parsing is bounded by the machine's slots (files/parse_slots.py).

`stop()` (the worker is stopping) kills them all: a file being parsed is given back to be ingested later, not
failed.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from orchestrator.files.retrieval import child as child_module

TIMED_OUT = "timed out"
IDLE_SECONDS = 60.0  # an idle process older than this is let go when the pool is next used


class Stopping(RuntimeError):
    """The worker is stopping: the file is given back, to be parsed by another worker or after a restart."""


class _Process:
    def __init__(self, setup: dict):
        self.popen = subprocess.Popen(
            [sys.executable, "-m", child_module.__name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._out = self.popen.stdout.fileno()
        self._buffer = b""
        self.idle_since = time.monotonic()
        self._send(setup)

    def _send(self, message: dict) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            _r, ready, _x = select.select([], [self.popen.stdin.fileno()], [], 1.0)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    data = data[os.write(self.popen.stdin.fileno(), data) :]

    def run(
        self, job: dict, timeout: float, heartbeat: Callable[[], None], beat: float
    ) -> tuple[int | None, str, bool]:
        """(status, reason, reusable): a negative status is the signal that ended the process; None, it had
        ended before it began the file (killed while idle): the file had no part in it."""
        self._send(job)
        deadline = None
        beaten = time.monotonic()
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.kill()
                return -signal.SIGKILL, TIMED_OUT, False
            if now - beaten >= beat:
                beaten = now
                heartbeat()
            message = self._answer(min(beat, deadline - now) if deadline is not None else beat)
            if message is None:
                continue
            if message == "eof":
                status = self.popen.wait()
                return (status if deadline is not None else None), "", False
            if message.get("slot"):
                deadline = time.monotonic() + timeout
                continue
            if message["retire"]:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(5)  # it exits on its own
            return message["status"], message["reason"], not message["retire"]

    def _answer(self, wait: float):
        """The next message, "eof" when the process has gone, or None after `wait` seconds without one."""
        while b"\n" not in self._buffer:
            ready, _w, _x = select.select([self._out], [], [], max(0.0, wait))
            if not ready:
                return None
            try:
                data = os.read(self._out, 65536)
            except BlockingIOError:
                return None
            if not data:
                return "eof"
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
            self.popen.wait()
        for pipe in (self.popen.stdin, self.popen.stdout):
            with contextlib.suppress(OSError):
                pipe.close()


class Pool:
    def __init__(self, setup: dict, processes: int):
        self._setup, self._processes = setup, processes
        self._idle: list[_Process] = []
        self._busy: list = []  # processes lent out (and _NEW for each being started)
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._stopped = False

    def run(self, job: dict, timeout: float, heartbeat: Callable[[], None], beat: float) -> tuple[int, str]:
        """Parse one job in a process of the pool: (status, reason) as retrieval/child.py answers, or the
        negative signal number that ended the process (with TIMED_OUT after a SIGKILL at `timeout`)."""
        status, tries = None, 0
        while status is None:  # a process found dead before it began the file is replaced
            if tries == 3:
                raise RuntimeError("parsing processes end before they begin a file (see the worker's log)")
            tries += 1
            process = self._take(heartbeat, beat)
            reusable = False
            try:
                status, reason, reusable = process.run(job, timeout, heartbeat, beat)
            finally:
                self._give_back(process, reusable)
            if self._stopped:
                raise Stopping("the worker is stopping")
        return status, reason

    def _take(self, heartbeat: Callable[[], None], beat: float) -> _Process:
        """An idle process, or a new one while there are fewer than `processes`; else wait for one to be
        given back (heartbeating: the lease stays ours)."""
        stale: list[_Process] = []
        beaten = time.monotonic()
        with self._lock:
            while True:
                if self._stopped:
                    raise Stopping("the worker is stopping")
                process, now = None, time.monotonic()
                while self._idle:
                    candidate = self._idle.pop()
                    if now - candidate.idle_since < IDLE_SECONDS and candidate.popen.poll() is None:
                        process = candidate
                        break
                    stale.append(candidate)
                if process is not None or len(self._busy) < self._processes:
                    self._busy.append(process or _NEW)
                    break
                self._freed.wait(beat)
                if time.monotonic() - beaten >= beat:
                    beaten = time.monotonic()
                    heartbeat()
        for old in stale:
            old.kill()
        if process is None:
            try:
                process = _Process(self._setup)
            finally:
                with self._lock:
                    self._busy.remove(_NEW)
                    if process is not None:
                        self._busy.append(process)
        return process

    def _give_back(self, process: _Process, reusable: bool) -> None:
        with self._lock:
            self._busy.remove(process)
            self._freed.notify()
            if reusable and not self._stopped:
                process.idle_since = time.monotonic()
                self._idle.append(process)
                return
        process.kill()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            processes = [*self._idle, *(each for each in self._busy if each is not _NEW)]
            self._idle.clear()
            self._freed.notify_all()
        for process in processes:
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.popen.kill()

    def size(self) -> int:
        with self._lock:
            return len(self._idle) + len(self._busy)


_NEW = object()  # a place taken in the pool by a process being started
_pools: dict[tuple, Pool] = {}
_pools_lock = threading.Lock()


def pool(setup: dict, processes: int) -> Pool:
    """The process's pool for this setup (memory limit, slots, recycling), of at most `processes`."""
    key = (tuple(sorted(setup.items())), processes)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = Pool(setup, processes)
        return _pools[key]


@atexit.register
def stop() -> None:
    """Kill every parsing process of this worker process (it is stopping)."""
    with _pools_lock:
        pools = list(_pools.values())
    for each in pools:
        each.stop()
