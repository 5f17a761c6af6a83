"""One session's jailed interpreter, seen from the host: start it, run code in it, stop it.

Everything is non-blocking file descriptors and one `selectors` loop per call, with no helper thread:
under gevent's patching the loop yields to other greenlets, and in a threaded server it is an ordinary
blocking wait. While code runs the loop reads what it prints (counting it against the output limit),
watches the clock and the jail's CPU time and memory, and on a breach sends SIGINT; an interpreter that
has not answered `INTERRUPT_GRACE_SECONDS` later is killed, and with it everything in its jail.

Between executions nothing runs: once an execution has replied the interpreter is stopped (SIGSTOP, every
thread of it) and any other process in the jail is killed, so a thread or a process the code left behind
can neither use CPU nor grow until the next execution, whose limits then count it. The jail's processes
live in a memory cgroup of their own where the host allows one (cgroup.py): the kernel holds them, with
their files and kernel objects, to the memory limit, and the host reads its kills from the cgroup.
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

from orchestrator.sandbox import proctree, seccomp
from orchestrator.sandbox.cgroup import Cgroups, JailCgroup
from orchestrator.sandbox.jail import host_view, jail_command, jail_user
from orchestrator.sandbox.limits import INTERRUPT_GRACE_SECONDS, SAMPLE_SECONDS, Limits
from orchestrator.sandbox.port import InputFile, Outcome
from orchestrator.sandbox.runtime import Runtime

HEADER = struct.Struct(">I")
MAX_HEADER = 1 << 20
READ_SIZE = 1 << 16
START_SECONDS = 15.0
TREE_SECONDS = 0.25  # a walk of the jail's process tree, for the code's child processes
PAUSE_SECONDS = 2.0  # to stop the interpreter and end the jail's other processes after an execution
ROOT_HINT = (
    "as root the jail runs as uid 65534, which must be able to read the Python runtime's files: "
    "make them readable by others, or run the sandbox as an unprivileged user"
)
SETPRIV_HINT = (
    "as root with a Python runtime uid 65534 cannot reach, the jail is started through `setpriv` "
    "(util-linux), which is not installed"
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
    lingering: bool = False  # the jail could not be stopped after the execution: the session must go


class Interpreter:
    """A jailed driver process (driver.py) holding one session's state."""

    def __init__(
        self,
        runtime: Runtime,
        limits: Limits,
        *,
        bwrap: str = "bwrap",
        cgroups: Cgroups | None = None,
        syscall_filter: bytes | None = None,
        setpriv: str | None = None,
    ):
        self.runtime = runtime
        self.limits = limits
        self.bwrap = bwrap
        self.cgroups = cgroups
        self.syscall_filter = syscall_filter
        self.setpriv = setpriv
        self.popen: subprocess.Popen | None = None
        self.pid: int | None = None  # the driver's host pid (PID 1 inside)
        self.cgroup: JailCgroup | None = None
        self.paused = False  # stopped between executions
        self.cpu_mark: float | None = None  # the interpreter's CPU time when it was stopped
        self._nested = False  # started through jail.host_view: bwrap's info gives a pid one namespace down

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        """Start the jail and wait for the driver to say it is ready, or raise JailFailure."""
        prefix, user = self._launcher()
        self._nested = bool(prefix)
        if self.cgroups is not None:
            try:
                self.cgroup = self.cgroups.make(self.limits.memory_bytes)
            except OSError as error:
                raise JailFailure(f"cannot make the jail's cgroup: {error}") from None
        request_r, self._requests = os.pipe()
        self._replies, reply_w = os.pipe()
        self._output, output_w = os.pipe()
        info_r, info_w = os.pipe()
        passed = [request_r, reply_w, info_w]
        if self.syscall_filter is not None:
            passed.append(seccomp.descriptor(self.syscall_filter))
        argv = jail_command(
            self.runtime,
            self.limits,
            info_fd=info_w,
            request_fd=request_r,
            reply_fd=reply_w,
            bwrap=self.bwrap,
            seccomp_fd=passed[3] if self.syscall_filter is not None else None,
        )
        try:
            self.popen = _spawn(prefix + argv, output_w, tuple(passed), user)
        except JailFailure:
            self.kill()
            os.close(info_r)
            raise
        finally:
            for fd in (*passed, output_w):
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

    def _launcher(self) -> tuple[list[str], int | None]:
        """What starts bwrap, and as which user: as root, `nobody`, through a view of the host in which it
        can reach the runtime if it cannot otherwise (jail.host_view)."""
        user = jail_user()
        if user is None or not self.runtime.blocked:
            return [], user
        if self.setpriv is None:
            raise JailFailure(SETPRIV_HINT)
        return host_view(self.runtime, bwrap=self.bwrap, setpriv=self.setpriv), None

    def run(self, code: str, files: Sequence[InputFile]) -> Run:
        """Run code once; never raises for anything the code does."""
        self._resume()
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
        if self.alive and not self._pause():
            run.lingering = True
        return run

    def kill(self) -> None:
        """End the jail: the driver is PID 1 of its namespace, so every process in it goes too."""
        if self.popen is not None:
            self._end_processes()
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
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
                        self._read_reply(run, reply, watch)
                if run.died is None:
                    watch.check()
            self._drain_output(run)
            watch.finish()
        finally:
            selector.close()

    def _read_output(self, selector, run: Run) -> None:
        with contextlib.suppress(BlockingIOError):
            data = os.read(self._output, READ_SIZE)
            if data:
                run.output.feed(data)
            else:
                selector.unregister(self._output)

    def _read_reply(self, run: Run, reply: ReplyReader, watch: _Watch) -> None:
        with contextlib.suppress(BlockingIOError):
            data = os.read(self._replies, READ_SIZE)
            if not data:
                run.died = self.exit_description() if self._wait_exit() else "it closed its reply pipe"
                watch.finish()  # before the kill removes the cgroup: was it the kernel, at the memory limit?
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

    def oom_kills(self) -> int:
        return self.cgroup.oom_kills() if self.cgroup is not None else 0

    # Between executions

    def _pause(self) -> bool:
        """Stop the interpreter and kill whatever else runs in the jail; False if that cannot be done."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGSTOP)
        deadline = time.monotonic() + PAUSE_SECONDS
        while time.monotonic() < deadline:
            others = self._others()
            for pid in others:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not others and proctree.stopped(self.pid):
                self.paused, self.cpu_mark = True, proctree.cpu_seconds(self.pid)
                return True
            time.sleep(0.001)
        return False

    def _resume(self) -> None:
        if self.paused and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def _others(self) -> list[int]:
        """The jail's live processes besides the interpreter (zombies it has not reaped are harmless)."""
        pids = self.cgroup.pids() if self.cgroup is not None else proctree.descendants(self.pid)
        return [pid for pid in pids if pid != self.pid and proctree.alive(pid)]

    # Starting

    def _await_start(self, info_fd: int) -> None:
        deadline = time.monotonic() + START_SECONDS
        self.pid = int(self._read_json(info_fd, deadline, "bwrap's info")["child-pid"])
        if self._nested:
            found = proctree.host_pid(self.popen.pid, self.pid)
            if found is None:
                raise JailFailure("the interpreter's process could not be found")
            self.pid = found
        if self.cgroup is not None:
            try:
                self.cgroup.add(self.pid)  # before it runs any code: it waits for its first request
            except OSError as error:
                raise JailFailure(f"cannot move the interpreter into its cgroup: {error}") from None
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
        # From the moment the interpreter was stopped: what ran before that was counted then.
        mark = interpreter.cpu_mark
        self.cpu_start = mark if mark is not None else proctree.cpu_seconds(interpreter.pid) or 0.0
        self.tree_cpu = self.cpu_start
        self.counted = interpreter.cgroup is not None  # the kernel holds the memory limit
        self.oom_start = interpreter.oom_kills()

    def finish(self) -> None:
        """After the exchange: a process the kernel killed at the memory limit is the memory limit's doing."""
        if self.counted and self.interpreter.oom_kills() > self.oom_start and self.run.stop is None:
            self.run.stop = Outcome.MEMORY

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
        if self.counted and self.interpreter.oom_kills() > self.oom_start:
            return self._stop(Outcome.MEMORY, now)
        cpu = proctree.cpu_seconds(self.interpreter.pid) or 0.0
        if now >= self.next_tree:
            self.next_tree = now + TREE_SECONDS
            usage = proctree.tree_usage(self.interpreter.pid, memory=not self.counted)
            if usage is not None:
                self.tree_cpu = usage.cpu_seconds
                if not self.counted and usage.memory_bytes > self.limits.memory_bytes:
                    return self._stop(Outcome.MEMORY, now)
        if max(cpu, self.tree_cpu) - self.cpu_start > self.limits.cpu_seconds:
            self._stop(Outcome.CPU, now)

    def _stop(self, reason: Outcome, now: float) -> None:
        self.run.stop = reason
        self.kill_at = now + INTERRUPT_GRACE_SECONDS
        self.interpreter.interrupt()


def _spawn(argv: list[str], output_fd: int, pass_fds: tuple[int, ...], user: int | None) -> subprocess.Popen:
    """bwrap with nothing of ours: no environment (it clears the jail's anyway), no other descriptor.

    Started from one thread that lives as long as the process: --die-with-parent is PR_SET_PDEATHSIG, which
    fires when the *thread* that forked bwrap ends, so a jail started from a request's thread would be
    killed when that thread goes, in the middle of a later execution.
    """
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
                umask=0o022,  # what bwrap makes for the jail must be readable by the jail's user
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
