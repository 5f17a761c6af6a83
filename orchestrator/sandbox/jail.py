"""The jail: one bubblewrap command line per session interpreter.

`bwrap` (Debian's `bubblewrap`) builds it from unprivileged user namespaces, no daemon and no root:

- every namespace new (`--unshare-all`): no network at all (a loopback of its own, with nothing on it),
  its own PID space (the interpreter is PID 1; when it dies, everything it started dies), IPC, UTS;
  a user namespace of its own (uid 1000 inside) that cannot create further ones (`--disable-userns`);
- no capabilities, a new session (no terminal to inject into), killed when its parent dies;
- a root that is an empty read-only tmpfs holding only the runtime's mounts (runtime.py), a fresh /proc
  and minimal /dev, and two size-limited tmpfs: /tmp and /mnt/data (the session's files);
- an empty environment but for the few variables below (no DATABASE_URL, REDIS_URL, keys or tokens).

When the sandbox itself runs as root, bwrap is started as `nobody` instead: RLIMIT_NPROC does not apply
to processes whose real user is root, and code should not run as the host's root in any case.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from orchestrator.sandbox.limits import Limits
from orchestrator.sandbox.runtime import MountKind, Runtime

DATA_DIR = "/mnt/data"
JAIL_UID = 1000
UNPRIVILEGED_UID = 65534  # nobody / nogroup
DRIVER = Path(__file__).with_name("driver.py")


def environment(runtime: Runtime) -> dict[str, str]:
    """All the jail's environment: where things are, and one thread per numeric library."""
    return {
        "PATH": runtime.bin_dir,
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "module://_sandbox_display",
        "MPLCONFIGDIR": "/tmp/.matplotlib",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def jail_command(
    runtime: Runtime, limits: Limits, *, info_fd: int, request_fd: int, reply_fd: int, bwrap: str = "bwrap"
) -> list[str]:
    """The full argv: bwrap's options, then the driver on the runtime's interpreter."""
    argv = [bwrap, *_isolation(), "--info-fd", str(info_fd), "--clearenv"]
    for name, value in environment(runtime).items():
        argv += ["--setenv", name, value]
    argv += ["--size", str(limits.disk_bytes), "--tmpfs", "/tmp"]
    argv += _runtime_mounts(runtime)
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--size", str(limits.disk_bytes), "--tmpfs", DATA_DIR, "--remount-ro", "/", "--chdir", DATA_DIR]
    config = {"rlimits": limits.rlimits(), "return_bytes": limits.return_bytes}
    program = [runtime.executable, "-I", "-u", "-c", driver_source()]
    return argv + program + [str(request_fd), str(reply_fd), json.dumps(config)]


def _isolation() -> list[str]:
    return [
        "--unshare-all",
        "--unshare-user",  # required, not merely tried
        "--disable-userns",
        "--as-pid-1",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(JAIL_UID),
        "--gid",
        str(JAIL_UID),
        "--hostname",
        "sandbox",
    ]


def _runtime_mounts(runtime: Runtime) -> list[str]:
    argv: list[str] = []
    for mount in runtime.mounts:
        if mount.kind is MountKind.RO_BIND:
            argv += ["--ro-bind", mount.source, mount.target]
        elif mount.kind is MountKind.SYMLINK:
            argv += ["--symlink", mount.source, mount.target]
        else:
            argv += ["--size", "4096", "--tmpfs", mount.target, "--remount-ro", mount.target]
    return argv


def driver_source() -> str:
    return DRIVER.read_text()


def jail_user() -> int | None:
    """The uid to start bwrap as: None (ourselves) unless we are root."""
    return UNPRIVILEGED_UID if os.geteuid() == 0 else None


def find_bwrap() -> str | None:
    return shutil.which("bwrap")
