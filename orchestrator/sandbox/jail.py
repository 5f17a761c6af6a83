"""The jail: one bubblewrap command line per session interpreter.

`bwrap` (Debian's `bubblewrap`) builds it from unprivileged user namespaces, no daemon and no root:

- every namespace new (`--unshare-all`): no network at all (a loopback of its own, with nothing on it),
  its own PID space (the interpreter is PID 1; when it dies, everything it started dies), IPC, UTS;
  a user namespace of its own (uid 1000 inside) that cannot create further ones (`--disable-userns`);
- no capabilities, a new session (no terminal to inject into), killed when its parent dies;
- a root that is an empty read-only tmpfs holding only the runtime's mounts (runtime.py), a fresh /proc
  and a minimal, read-only /dev, and three size-limited tmpfs: /tmp, /mnt/data (the session's files) and
  /dev/shm (POSIX shared memory and semaphores);
- a system call filter (seccomp.py);
- an empty environment but for the few variables below (no DATABASE_URL, REDIS_URL, keys or tokens).

When the sandbox itself runs as root, bwrap is started as `nobody` instead: RLIMIT_NPROC does not apply
to processes whose real user is root, and code should not run as the host's root in any case. `nobody`
often cannot reach the runtime (a pyenv or a venv's base under a home directory of mode 700); bwrap,
which resolves every path it binds as the user it runs as, would then fail. So as root the jail is
started in a mount namespace of its own (`host_view`): there each directory `nobody` cannot pass through
on the way to the runtime is covered by an empty tmpfs that shows the runtime's paths alone, read-only,
and `setpriv` then drops to `nobody` to start the jail. Nothing else of those directories is visible to
`nobody`, let alone to the jail, which shows only what `jail_command` binds.
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
    runtime: Runtime,
    limits: Limits,
    *,
    info_fd: int,
    request_fd: int,
    reply_fd: int,
    bwrap: str = "bwrap",
    seccomp_fd: int | None = None,
) -> list[str]:
    """The full argv: bwrap's options, then the driver on the runtime's interpreter."""
    argv = [bwrap, *_isolation(), "--info-fd", str(info_fd), "--clearenv"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    for name, value in environment(runtime).items():
        argv += ["--setenv", name, value]
    disk = str(limits.disk_bytes)
    argv += ["--size", disk, "--tmpfs", "/tmp"]
    argv += _runtime_mounts(runtime)
    # /dev is a tmpfs of bwrap's with no size: read-only, but for a sized /dev/shm.
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        disk,
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/dev",
    ]
    argv += ["--size", disk, "--tmpfs", DATA_DIR, "--remount-ro", "/", "--chdir", DATA_DIR]
    config = {
        "rlimits": limits.rlimits(),
        "return_bytes": limits.return_bytes,
        "return_files": limits.return_files,
    }
    program = [runtime.executable, "-I", "-u", "-c", driver_source()]
    return argv + program + [str(request_fd), str(reply_fd), json.dumps(config)]


def host_view(runtime: Runtime, *, bwrap: str, setpriv: str) -> list[str]:
    """As root, the argv before `jail_command`'s when `nobody` cannot reach the runtime: a mount namespace
    (the host's tree, with each blocking directory covered and the runtime's paths in it bound back
    read-only), then `setpriv` to `nobody`.

    Its own PID namespace too, so that the jail still dies with the host: this bwrap's monitor drops its
    capabilities, which leaves it unable to signal `nobody`'s processes when it dies, but its PID 1 is
    root's and dies with it, and the kernel then ends every process of the namespace, the jail's included.
    (bwrap's info then gives the jail's pid in that namespace: proctree.host_pid finds the host's.)"""
    argv = [bwrap, "--dev-bind", "/", "/", "--unshare-pid", "--die-with-parent"]
    blocked = runtime.blocked
    for directory in blocked:
        argv += ["--tmpfs", directory]
    made: set[str] = set()
    for mount in runtime.mounts:
        top = _under(mount.source, blocked) if mount.kind is MountKind.RO_BIND else None
        if top is None:
            continue
        # Made one by one: parents bwrap makes on its own may copy the host's mode (0700).
        for directory in _between(top, mount.source):
            if directory not in made:
                made.add(directory)
                argv += ["--dir", directory]
        argv += ["--ro-bind", mount.source, mount.source]
    ids = str(UNPRIVILEGED_UID)
    return argv + [setpriv, f"--reuid={ids}", f"--regid={ids}", "--clear-groups", "--"]


def _under(path: str, directories: tuple[str, ...]) -> str | None:
    return next((d for d in directories if path.startswith(d.rstrip("/") + "/")), None)


def _between(top: str, path: str) -> list[str]:
    """The directories strictly between `top` and `path`, outermost first."""
    parts = path[len(top.rstrip("/")) + 1 :].split("/")[:-1]
    return [top.rstrip("/") + "/" + "/".join(parts[: n + 1]) for n in range(len(parts))]


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


def find_setpriv() -> str | None:
    return shutil.which("setpriv")
