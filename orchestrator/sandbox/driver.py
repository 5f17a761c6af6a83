"""The program inside the jail: one session's persistent Python interpreter. Standard library only.

The host runs it as `python -I -u -c <this file> REQUEST_FD REPLY_FD CONFIG` as PID 1 of the jail's PID
namespace, and talks to it over two pipes. Each message is a 4-byte big-endian length, a JSON header, then
the raw bytes of the files the header lists. Requests carry code and the input files to write into
/mnt/data; replies carry the error (a traceback) and the files and images the execution produced. What
the code prints goes to fds 1 and 2, one pipe the host reads as it arrives: the host counts and cuts it,
and SIGINT (the time, CPU, memory and output limits) raises KeyboardInterrupt in the code.

Nothing here is trusted by the host: the code it runs can rewrite any of it, and only harms its own
session by doing so. It exists to keep state between executions, the way a Jupyter kernel does.
"""

import ast
import builtins
import contextlib
import importlib.abc
import importlib.util
import io
import json
import linecache
import os
import resource
import signal
import struct
import sys
import time
import traceback
import types

HEADER = struct.Struct(">I")
CHUNK = 1 << 20
DATA = "/mnt/data"
BACKEND = "_sandbox_display"  # MPLBACKEND=module://_sandbox_display inside the jail
PNG = b"\x89PNG\r\n\x1a\n"
MAX_SCAN = 10_000  # files looked at in /mnt/data after each execution
MAIN_PID = os.getpid()


class Driver:
    def __init__(self, request_fd, reply_fd, config):
        self.requests = request_fd
        self.replies = reply_fd
        self.return_bytes = config["return_bytes"]
        self.return_files = config.get("return_files", MAX_SCAN)
        self.images = []
        self.image_bytes = 0
        self.dropped_images = 0
        main = types.ModuleType("__main__")  # the code's globals, importable as __main__ (pickle needs it)
        main.__dict__.update(__builtins__=builtins, display=self.display)
        sys.modules["__main__"] = main
        self.namespace = main.__dict__

    def serve(self):
        send(self.replies, {"ready": True})
        number = 0
        while True:
            request = receive(self.requests)
            if request is None:
                return
            number += 1
            header, payloads = self.execute(request, number)
            send(self.replies, header, payloads)

    def execute(self, request, number):
        reap()  # what the host killed while the session was stopped
        problem = self.write_inputs(request["files"])
        before = snapshot()
        self.images, self.image_bytes, self.dropped_images = [], 0, 0
        error, kind = (
            (problem, "disk") if problem else run_code(request["code"], self.namespace, number, self.display)
        )
        self.show_figures()
        flush()
        stray = end_stray_processes()
        files, payloads, omitted = self.changed_files(before)
        header = {"error": error, "kind": kind, "files": files, "images": [len(i) for i in self.images]}
        header.update(omitted=omitted, dropped_images=self.dropped_images, stray=stray)
        return header, payloads + self.images

    def write_inputs(self, files):
        """Copy each input file from the request pipe into /mnt/data; always consume every byte."""
        problem = None
        for entry in files:
            try:
                handle = open_for_writing(os.path.join(DATA, entry["name"]))
            except OSError as error:
                handle, problem = None, f"Could not write /mnt/data/{entry['name']}: {error}"
            problem = copy_in(self.requests, entry["size"], handle) or problem
        return problem

    def changed_files(self, before):
        """Files created or changed since `before`, within what may still be returned."""
        budget = self.return_bytes - self.image_bytes
        entries, payloads, omitted = [], [], []
        after = snapshot()
        for name in sorted(after):
            if before.get(name) == after[name]:
                continue
            if len(self.images) + len(entries) >= self.return_files:
                omitted.append(name)
                continue
            data = read_file(os.path.join(DATA, name), budget)
            if data is None:
                omitted.append(name)
                continue
            budget -= len(data)
            entries.append({"name": name, "size": len(data)})
            payloads.append(data)
        return entries, payloads, omitted

    def display(self, *objects):
        """Show objects as Jupyter would: figures and objects with _repr_png_ as images, others as repr."""
        for obj in objects:
            if hasattr(obj, "savefig") and hasattr(obj, "canvas"):
                self.add_image(render(obj))
            elif callable(getattr(obj, "_repr_png_", None)):
                self.add_image(obj._repr_png_())
            else:
                print(repr(obj))

    def add_image(self, png):
        if not isinstance(png, bytes | bytearray) or not png:
            return
        if self.image_bytes + len(png) > self.return_bytes or len(self.images) >= self.return_files:
            self.dropped_images += 1
            return
        self.images.append(bytes(png))
        self.image_bytes += len(png)

    def show_figures(self, *_args, **_kwargs):
        """plt.show(), and the end of every execution: every open figure becomes an image, then closes."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        try:
            for number in pyplot.get_fignums():
                self.add_image(render(pyplot.figure(number)))
            pyplot.close("all")
        except Exception:
            traceback.print_exc()


def run_code(code, namespace, number, show):
    """Run a cell: every statement, then display the last one's value if it is an expression."""
    filename = f"<cell {number}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    try:
        allow_interrupts(True)
        try:
            tree = ast.parse(code, filename)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, filename, "exec"), namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
                if value is not None:
                    namespace["_"] = value
                    show(value)
        finally:
            allow_interrupts(False)
            if os.getpid() != MAIN_PID:  # a child the code forked has reached the cell's end
                os._exit(0)
    except BaseException as exc:
        if os.getpid() != MAIN_PID:
            os._exit(1)
        return describe(exc, filename), kind_of(exc)
    return None, None


def allow_interrupts(allowed):
    """SIGINT is only let through while the code runs; one that comes later is dropped, not kept."""
    if allowed:
        while signal.sigtimedwait({signal.SIGINT}, 0) is not None:
            pass
    signal.pthread_sigmask(signal.SIG_UNBLOCK if allowed else signal.SIG_BLOCK, {signal.SIGINT})


def describe(exc, filename):
    """The traceback from the cell's first frame on (the driver's own frames are not the code's)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    if isinstance(exc, SyntaxError):
        tb = None
    return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip("\n")


def kind_of(exc):
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, BlockingIOError) or (isinstance(exc, RuntimeError) and "new thread" in str(exc)):
        return "processes"
    if isinstance(exc, OSError) and exc.errno == 27:  # EFBIG
        return "file_size"
    if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
        return "disk"
    return "error"


def render(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def end_stray_processes():
    """Kill every process the execution left behind (the driver is PID 1: kill(-1) spares only it)."""
    for _ in range(200):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return False
        reap()
        time.sleep(0.001)
    return True


def reap():
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def flush():
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # the code may have replaced or closed them
            stream.flush()


def snapshot():
    """{relative path: (inode, size, mtime)} of the regular files under /mnt/data (symlinks skipped)."""
    found = {}
    for directory, subdirectories, names in os.walk(DATA):
        for name in names:
            path = os.path.join(directory, name)
            try:
                stat = os.lstat(path)
            except OSError:
                continue
            if stat.st_mode & 0o170000 == 0o100000:
                found[os.path.relpath(path, DATA)] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if len(found) >= MAX_SCAN:
                return found
        subdirectories.sort()
    return found


def read_file(path, budget):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        stat = os.fstat(fd)
        if stat.st_mode & 0o170000 != 0o100000 or stat.st_size > budget:
            return None
        chunks, size = [], 0
        while chunk := os.read(fd, CHUNK):
            size += len(chunk)
            if size > budget:
                return None
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def open_for_writing(path):
    """Open /mnt/data/NAME for writing, replacing a symlink or a file the code left there."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    try:
        return os.open(path, flags, 0o644)
    except OSError:
        if not os.path.islink(path):
            raise
        os.unlink(path)
        return os.open(path, flags, 0o644)


def copy_in(fd, size, handle):
    """Move `size` bytes from the pipe to the file (or nowhere); a failed write is returned, not raised."""
    problem = None
    while size > 0:
        chunk = os.read(fd, min(CHUNK, size))
        if not chunk:
            raise EOFError("the host closed the request pipe mid-file")
        size -= len(chunk)
        if handle is not None and problem is None:
            try:
                os.write(handle, chunk)
            except OSError as error:
                problem = f"Could not write an input file into /mnt/data: {error}"
    if handle is not None:
        os.close(handle)
    return problem


def receive(fd):
    prefix = read_exactly(fd, HEADER.size)
    if prefix is None:
        return None
    return json.loads(read_exactly(fd, HEADER.unpack(prefix)[0]))


def read_exactly(fd, size):
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def send(fd, header, payloads=()):
    body = json.dumps(header).encode()
    write_all(fd, HEADER.pack(len(body)) + body)
    for payload in payloads:
        write_all(fd, payload)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class DisplayBackend(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A matplotlib backend drawn with Agg whose show() hands the figures to the driver."""

    def __init__(self, driver):
        self.driver = driver

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name == BACKEND else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        from matplotlib.backend_bases import FigureManagerBase
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        module.FigureCanvas = FigureCanvasAgg
        module.FigureManager = FigureManagerBase
        module.show = self.driver.show_figures


def apply_limits(config):
    for name, value in config["rlimits"].items():
        kind = getattr(resource, name)
        hard = resource.getrlimit(kind)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)  # a hard limit only goes down
        resource.setrlimit(kind, (value, value))
    # Past RLIMIT_FSIZE a write fails with EFBIG (an OSError the code sees) instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # SIGINT is how every limit stops the code. An ignored SIGINT is inherited through exec (a host started
    # with `nohup`, or as `cmd &` from a script) and Python then leaves it ignored: the code would run on
    # until the host kills the interpreter and the session is lost.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def main(argv):
    request_fd, reply_fd, config = int(argv[1]), int(argv[2]), json.loads(argv[3])
    for fd in (request_fd, reply_fd):
        os.set_inheritable(fd, False)
    apply_limits(config)
    driver = Driver(request_fd, reply_fd, config)
    sys.meta_path.insert(0, DisplayBackend(driver))
    sys.argv = [""]
    driver.serve()


if __name__ == "__main__":
    main(sys.argv)
