"""One session's jailed interpreter, seen from the host: start it, run code in it, stop it.

Everything is non-blocking file descriptors and one `selectors` loop per call, with no helper thread:
under gevent's patching the loop yields to other greenlets, and in a threaded server it is an ordinary
blocking wait. While code runs the loop reads what it prints (counting it against the output limit),
watches the clock and the jail's CPU time and memory, and on a breach sends SIGINT; an interpreter that
has not answered `INTERRUPT_GRACE_SECONDS` later is killed, and with it everything in its jail.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from orchestrator.sandbox import proctree
from orchestrator.sandbox.jail import jail_command, jail_user
from orchestrator.sandbox.limits import INTERRUPT_GRACE_SECONDS, SAMPLE_SECONDS, Limits
from orchestrator.sandbox.port import InputFile, Outcome
from orchestrator.sandbox.runtime import Runtime

HEADER = struct.Struct(">I")
MAX_HEADER = 1 << 20
READ_SIZE = 1 << 16
START_SECONDS = 15.0
TREE_SECONDS = 1.0  # a full pass over /proc, for the code's child processes
ROOT_HINT = (
    "as root the jail runs as uid 65534, which must be able to read the Python runtime: "
    "set ORCHESTRATOR_CODE_PYTHON to one it can read, or run the sandbox as an unprivileged user"
)
TRUNCATED = "\n[output truncated: the code printed more than {limit}]"


class JailFailure(Exception):
    """The jail or its interpreter could not be started."""


class ProtocolError(Exception):
    """The interpreter sent something that is not a well-formed reply."""


class OutputBuffer:
    """What the code printed, kept up to the limit; the rest is counted and dropped."""

    def __init__(self, limit: int):
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        room = self.limit - len(self.kept)
        self.kept += data[:room]
        self.dropped += max(0, len(data) - room)

    @property
    def exceeded(self) -> bool:
        return self.dropped > 0

    def text(self, limit_text: str) -> str:
        text = self.kept.decode(errors="replace")
        return text + TRUNCATED.format(limit=limit_text) if self.exceeded else text


class ReplyReader:
    """Parses one reply: a length, a JSON header, then exactly the bytes its files and images declare."""

    def __init__(self, max_payload: int):
        self.max_payload = max_payload
        self.buffer = bytearray()
        self.header: dict | None = None
        self.sizes: list[int] = []
        self.start = 0

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if self.header is None and len(self.buffer) >= HEADER.size:
            self._parse_header()
        if self.header is not None and len(self.buffer) > self.start + sum(self.sizes):
            raise ProtocolError("the interpreter sent more than its reply declared")

    @property
    def complete(self) -> bool:
        return self.header is not None and len(self.buffer) == self.start + sum(self.sizes)

    def payloads(self) -> list[bytes]:
        out, offset = [], self.start
        for size in self.sizes:
            out.append(bytes(self.buffer[offset : offset + size]))
            offset += size
        return out

    def _parse_header(self) -> None:
        (length,) = HEADER.unpack_from(self.buffer)
        if length > MAX_HEADER:
            raise ProtocolError("the interpreter's reply header is too large")
        if len(self.buffer) < HEADER.size + length:
            return
        try:
            header = json.loads(self.buffer[HEADER.size : HEADER.size + length])
            files, images = header.get("files", []), header.get("images", [])
            sizes = [int(f["size"]) for f in files if isinstance(f["name"], str)] + [int(s) for s in images]
            if len(sizes) != len(files) + len(images):
                raise ValueError("a file without a name")
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise ProtocolError(f"the interpreter's reply header is malformed: {error}") from None
        if any(size < 0 for size in sizes) or sum(sizes) > self.max_payload:
            raise ProtocolError("the interpreter's reply is larger than the return limit")
        self.header, self.sizes, self.start = header, sizes, HEADER.size + length


@dataclass
class Run:
    """What one execution produced, before it is turned into an Execution."""

    output: OutputBuffer
    header: dict | None = None  # the driver's reply; None when it never came
    files: list[tuple[str, bytes]] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)
    stop: Outcome | None = None  # the limit the host enforced, if any
    killed: bool = False  # the interpreter was killed (it did not stop, or it broke the protocol)
    died: str | None = None  # how the interpreter ended, if it ended during this run


class Interpreter:
    """A jailed driver process (driver.py) holding one session's state."""

    def __init__(self, runtime: Runtime, limits: Limits, *, bwrap: str = "bwrap"):
        self.runtime = runtime
        self.limits = limits
        self.bwrap = bwrap
        self.popen: subprocess.Popen | None = None
        self.pid: int | None = None  # the driver's host pid (PID 1 inside)

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        """Start the jail and wait for the driver to say it is ready, or raise JailFailure."""
        request_r, self._requests = os.pipe()
        self._replies, reply_w = os.pipe()
        self._output, output_w = os.pipe()
        info_r, info_w = os.pipe()
        argv = jail_command(
            self.runtime,
            self.limits,
            info_fd=info_w,
            request_fd=request_r,
            reply_fd=reply_w,
            bwrap=self.bwrap,
        )
        try:
            self.popen = _spawn(argv, output_w, (request_r, reply_w, info_w))
        except JailFailure:
            self.kill()
            os.close(info_r)
            raise
        finally:
            for fd in (request_r, reply_w, output_w, info_w):
                os.close(fd)
        for fd in (self._requests, self._replies, self._output):
            os.set_blocking(fd, False)
        try:
            self._await_start(info_r)
        except JailFailure as error:
            self.kill()
            if jail_user() is not None and "Permission denied" in str(error):
                raise JailFailure(f"{error} ({ROOT_HINT})") from None
            raise
        finally:
            os.close(info_r)

    def run(self, code: str, files: Sequence[InputFile]) -> Run:
        """Run code once; never raises for anything the code does."""
        run = Run(OutputBuffer(self.limits.output_bytes))
        header = {"code": code, "files": [{"name": f.name, "size": len(f.data)} for f in files]}
        body = json.dumps(header).encode()
        outgoing = [HEADER.pack(len(body)) + body, *(f.data for f in files)]
        reply = ReplyReader(self.limits.return_bytes)
        try:
            self._exchange(run, outgoing, reply)
        except ProtocolError as error:
            run.died = f"it broke the protocol ({error})"
            self.kill()
            run.killed = True
        if reply.complete:
            run.header = reply.header
            payloads = reply.payloads()
            names = [entry["name"] for entry in reply.header.get("files", [])]
            run.files = list(zip(names, payloads[: len(names)], strict=True))
            run.images = payloads[len(names) :]
        return run

    def kill(self) -> None:
        """End the jail: the driver is PID 1 of its namespace, so every process in it goes too."""
        if self.popen is not None:
            self._end_processes()
        for name in ("_requests", "_replies", "_output"):
            fd = getattr(self, name, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, None)

    def _end_processes(self) -> None:
        if self.pid is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        try:
            self.popen.wait(2)  # bwrap reaps the driver and exits: no zombie is left to anyone else
        except subprocess.TimeoutExpired:
            self.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)

    def exit_description(self) -> str:
        code = self.popen.poll() if self.popen else None
        if code is None:
            return "it stopped answering"
        if code < 0:
            return f"it was killed by {signal.Signals(-code).name}"
        return f"it exited with status {code}"

    # The loop

    def _exchange(self, run: Run, outgoing: list[bytes], reply: ReplyReader) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._output, selectors.EVENT_READ, "output")
        selector.register(self._replies, selectors.EVENT_READ, "reply")
        selector.register(self._requests, selectors.EVENT_WRITE, "request")
        outbox = _Outbox(outgoing)
        watch = _Watch(self, run)
        try:
            while not reply.complete and run.died is None:
                for key, _ in selector.select(watch.wait()):
                    if run.died is not None:
                        break  # killed while handling this batch: its descriptors are closed
                    if key.data == "request" and outbox.send(self._requests):
                        selector.unregister(self._requests)
                    elif key.data == "output":
                        self._read_output(selector, run)
                    elif key.data == "reply":
                        self._read_reply(run, reply)
                if run.died is None:
                    watch.check()
            self._drain_output(run)
        finally:
            selector.close()

    def _read_output(self, selector, run: Run) -> None:
        with contextlib.suppress(BlockingIOError):
            data = os.read(self._output, READ_SIZE)
            if data:
                run.output.feed(data)
            else:
                selector.unregister(self._output)

    def _read_reply(self, run: Run, reply: ReplyReader) -> None:
        with contextlib.suppress(BlockingIOError):
            data = os.read(self._replies, READ_SIZE)
            if not data:
                run.died = self.exit_description() if self._wait_exit() else "it closed its reply pipe"
                self.kill()
                return
            reply.feed(data)

    def _drain_output(self, run: Run) -> None:
        """What the driver printed before its reply is already in the pipe: read it all."""
        while self._output is not None:
            try:
                data = os.read(self._output, READ_SIZE)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            run.output.feed(data)

    def _wait_exit(self) -> bool:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(1)
        return self.popen.poll() is not None

    def interrupt(self) -> None:
        if self.pid is not None and self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)

    # Starting

    def _await_start(self, info_fd: int) -> None:
        deadline = time.monotonic() + START_SECONDS
        self.pid = int(self._read_json(info_fd, deadline, "bwrap's info")["child-pid"])
        reader = ReplyReader(0)
        while not reader.complete:
            data = self._read_before(self._replies, deadline, "the interpreter's greeting")
            try:
                reader.feed(data)
            except ProtocolError as error:
                raise JailFailure(f"the interpreter did not start properly: {error}") from None

    def _read_json(self, fd: int, deadline: float, what: str) -> dict:
        buffer = b""
        while True:
            buffer += self._read_before(fd, deadline, what)
            with contextlib.suppress(ValueError):
                return json.loads(buffer)

    def _read_before(self, fd: int, deadline: float, what: str) -> bytes:
        os.set_blocking(fd, False)
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise JailFailure(f"timed out waiting for {what}{self._start_output()}")
                if selector.select(remaining):
                    try:
                        data = os.read(fd, READ_SIZE)
                    except BlockingIOError:
                        continue
                    if not data:
                        self._wait_exit()
                        raise JailFailure(
                            f"{what} never came: {self.exit_description()}{self._start_output()}"
                        )
                    return data

    def _start_output(self) -> str:
        """What bwrap or the interpreter printed while failing to start."""
        run = Run(OutputBuffer(4096))
        self._drain_output(run)
        text = run.output.text("4 KiB").strip()
        return f"; it printed: {text}" if text else ""


class _Outbox:
    """The request, written as fast as the driver reads it (input files can be larger than a pipe)."""

    def __init__(self, chunks: list[bytes]):
        self.chunks = deque(memoryview(chunk) for chunk in chunks if chunk)

    def send(self, fd: int) -> bool:
        """Write what the pipe takes; True once everything is written (or the driver is gone)."""
        while self.chunks:
            try:
                written = os.write(fd, self.chunks[0])
            except BlockingIOError:
                return False
            except BrokenPipeError:
                return True  # the driver died: its closed reply pipe tells the rest
            self.chunks[0] = self.chunks[0][written:]
            if not self.chunks[0]:
                self.chunks.popleft()
        return True


class _Watch:
    """The limits the host enforces while code runs: wall time, CPU time, memory, output."""

    def __init__(self, interpreter: Interpreter, run: Run):
        self.interpreter = interpreter
        self.run = run
        self.limits = interpreter.limits
        now = time.monotonic()
        self.deadline = now + self.limits.timeout_seconds
        self.kill_at: float | None = None
        self.next_sample = now + SAMPLE_SECONDS
        self.next_tree = now + TREE_SECONDS
        self.cpu_start = proctree.cpu_seconds(interpreter.pid) or 0.0
        self.tree_cpu = self.cpu_start

    def wait(self) -> float:
        now = time.monotonic()
        target = min(self.deadline, self.kill_at or self.deadline, self.next_sample)
        return max(0.0, target - now)

    def check(self) -> None:
        now = time.monotonic()
        if self.kill_at is not None:
            if now >= self.kill_at:
                self.interpreter.kill()
                self.run.killed, self.run.died = True, "it did not stop when interrupted"
            return
        if self.run.output.exceeded:
            self._stop(Outcome.OUTPUT, now)
        elif now >= self.deadline:
            self._stop(Outcome.TIMEOUT, now)
        elif now >= self.next_sample:
            self._sample(now)

    def _sample(self, now: float) -> None:
        self.next_sample = now + SAMPLE_SECONDS
        cpu = proctree.cpu_seconds(self.interpreter.pid) or 0.0
        if now >= self.next_tree:
            self.next_tree = now + TREE_SECONDS
            usage = proctree.tree_usage(self.interpreter.pid)
            if usage is not None:
                self.tree_cpu = usage.cpu_seconds
                if usage.memory_bytes > self.limits.memory_bytes:
                    return self._stop(Outcome.MEMORY, now)
        if max(cpu, self.tree_cpu) - self.cpu_start > self.limits.cpu_seconds:
            self._stop(Outcome.CPU, now)

    def _stop(self, reason: Outcome, now: float) -> None:
        self.run.stop = reason
        self.kill_at = now + INTERRUPT_GRACE_SECONDS
        self.interpreter.interrupt()


def _spawn(argv: list[str], output_fd: int, pass_fds: tuple[int, ...]) -> subprocess.Popen:
    """bwrap with nothing of ours: no environment (it clears the jail's anyway), no other descriptor.

    Started from one thread that lives as long as the process: --die-with-parent is PR_SET_PDEATHSIG, which
    fires when the *thread* that forked bwrap ends, so a jail started from a request's thread would be
    killed when that thread goes, in the middle of a later execution.
    """
    user = jail_user()
    extra = {"user": user, "group": user, "extra_groups": []} if user is not None else {}
    try:
        return (
            _spawner()
            .submit(
                subprocess.Popen,
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output_fd,
                stderr=output_fd,
                pass_fds=pass_fds,
                start_new_session=True,
                env={},
                **extra,
            )
            .result()
        )
    except OSError as error:
        raise JailFailure(f"cannot start bwrap ({argv[0]}): {error}") from None


_SPAWNER: tuple[int, ThreadPoolExecutor] | None = None
_SPAWNER_LOCK = threading.Lock()


def _spawner() -> ThreadPoolExecutor:
    """This process's spawning thread (made again after a fork: the parent's thread is not in the child)."""
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None or _SPAWNER[0] != os.getpid():
            _SPAWNER = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner"))
        return _SPAWNER[1]
