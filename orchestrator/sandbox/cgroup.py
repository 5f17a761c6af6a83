"""A memory cgroup per jail, where the host lets this process make them: the one limit that counts everything
a session holds in memory together (its processes, the files in its tmpfs mounts, memfd and shared memory,
the kernel's objects for its files, pipes and sockets). Past it the kernel reclaims, then kills a process
of that jail alone; the host sees the kill in the cgroup's counters.

Where the cgroups come from (ORCHESTRATOR_CODE_CGROUP=auto, the default):

    cgroup v2   the process's own cgroup, when its memory controller is delegated to us: jails are made
                beside this process, which first moves itself into a leaf of its own (`orchestrator-host`)
                if it is not in one, since a v2 cgroup with processes cannot hand controllers down
                (systemd: `Delegate=yes`; a container: a writable cgroup namespace)
    cgroup v1   the process's own cgroup in the memory hierarchy, when it may make children there (root,
                or a delegated directory)

With none, `find` says why, and the sandbox bounds memory per process (RLIMIT_AS) and samples the sum
(docs/sandbox.md, "Where there is no cgroup"). `required` refuses to start without one; `off` never looks.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LEAF = "orchestrator-host"
REMOVE_TRIES = 50
PREFIX = "orchestrator-jail-"
_NUMBERS = itertools.count()
_LEFT: set[Path] = set()  # jail cgroups not yet empty when their jail ended: removed later
_LEFT_LOCK = threading.Lock()


class CgroupUnavailable(Exception):
    """The host gives this process no cgroup to make jails' cgroups in: the message says why."""


@dataclass(frozen=True)
class Cgroups:
    """Where this process makes its jails' cgroups, and which interface they have."""

    parent: Path
    version: int

    def make(self, memory_bytes: int) -> JailCgroup:
        """A new, empty cgroup holding at most `memory_bytes` (no swap)."""
        sweep_left()
        path = self.parent / f"{PREFIX}{os.getpid()}-{next(_NUMBERS)}"
        path.mkdir()
        jail = JailCgroup(path, self.version)
        try:
            jail.limit(memory_bytes)
        except OSError:
            jail.remove()
            raise
        return jail


@dataclass(frozen=True)
class JailCgroup:
    path: Path
    version: int

    def limit(self, memory_bytes: int) -> None:
        if self.version == 2:
            _write(self.path / "memory.max", memory_bytes)
            with contextlib.suppress(FileNotFoundError):
                _write(self.path / "memory.swap.max", 0)
            return
        _write(self.path / "memory.limit_in_bytes", memory_bytes)
        with contextlib.suppress(FileNotFoundError):  # only with swap accounting
            _write(self.path / "memory.memsw.limit_in_bytes", memory_bytes)

    def add(self, pid: int) -> None:
        """Move a process (and the children it makes from now on) into the cgroup."""
        _write(self.path / "cgroup.procs", pid)

    def pids(self) -> list[int]:
        try:
            return [int(line) for line in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def oom_kills(self) -> int:
        """How many of the jail's processes the kernel has killed at the memory limit so far."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def usage(self) -> int:
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        try:
            return int((self.path / name).read_text())
        except (OSError, ValueError):
            return 0

    def peak(self) -> int | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        """Remove the cgroup once its processes have exited (they are being killed: a moment at most); one
        that still holds some after that is removed by a later call."""
        for _ in range(REMOVE_TRIES):
            if _rmdir(self.path):
                return
            time.sleep(0.01)
        with _LEFT_LOCK:
            _LEFT.add(self.path)


def sweep_left() -> None:
    with _LEFT_LOCK:
        left = list(_LEFT)
    for path in left:
        if _rmdir(path):
            with _LEFT_LOCK:
                _LEFT.discard(path)


def find(mode: str, *, proc: Path = Path("/proc")) -> Cgroups:
    """The cgroups for `mode` (`auto` or `required`); CgroupUnavailable says why there are none."""
    if mode == "off":
        raise CgroupUnavailable("ORCHESTRATOR_CODE_CGROUP is off")
    mounts = _mounts(proc / "self" / "mountinfo")
    memberships = _memberships(proc / "self" / "cgroup")
    reasons = []
    for attempt in (_unified, _legacy):
        try:
            found = attempt(mounts, memberships)
        except CgroupUnavailable as reason:
            reasons.append(str(reason))
            continue
        _remove_orphans(found.parent)
        return found
    raise CgroupUnavailable("; ".join(reasons))


def _remove_orphans(parent: Path) -> None:
    """Jails' cgroups that a process killed before it could clean up left behind (their jails died with
    it): those of a pid that is gone, once they are empty."""
    for path in parent.glob(f"{PREFIX}*"):
        owner = path.name.removeprefix(PREFIX).split("-")[0]
        if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            _rmdir(path)


def _unified(mounts: dict[str, list[Mounted]], memberships: dict[str, str]) -> Cgroups:
    if "" not in memberships or not mounts.get("cgroup2"):
        raise CgroupUnavailable("no cgroup v2 hierarchy")
    own = mounts["cgroup2"][0].path_of(memberships[""])
    parent = own.parent if own.name == LEAF else own
    if "memory" not in _words(parent / "cgroup.controllers"):
        raise CgroupUnavailable(f"cgroup v2: the memory controller is not delegated to {parent}")
    if "memory" not in _words(parent / "cgroup.subtree_control"):
        _hand_down(parent, own)
    return Cgroups(parent, 2)


def _hand_down(parent: Path, own: Path) -> None:
    """Enable the memory controller for `parent`'s children: this process moves into a leaf first."""
    if own == parent:
        others = set(_words(parent / "cgroup.procs")) - {str(os.getpid())}
        if others:
            raise CgroupUnavailable(f"cgroup v2: {parent} holds other processes too")
        try:
            (parent / LEAF).mkdir(exist_ok=True)
            _write(parent / LEAF / "cgroup.procs", os.getpid())
        except OSError as error:
            raise CgroupUnavailable(f"cgroup v2: cannot move into {parent / LEAF}: {error}") from None
    try:
        _write(parent / "cgroup.subtree_control", "+memory")
    except OSError as error:
        raise CgroupUnavailable(f"cgroup v2: cannot enable memory under {parent}: {error}") from None


def _legacy(mounts: dict[str, list[Mounted]], memberships: dict[str, str]) -> Cgroups:
    hierarchies = [mount for mount in mounts.get("cgroup", []) if "memory" in mount.options]
    if not hierarchies or "memory" not in memberships:
        raise CgroupUnavailable("no cgroup v1 memory hierarchy")
    parent = hierarchies[0].path_of(memberships["memory"])
    probe = parent / f"{PREFIX}{os.getpid()}-probe"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as error:
        raise CgroupUnavailable(f"cgroup v1: cannot make cgroups in {parent}: {error}") from None
    return Cgroups(parent, 1)


@dataclass(frozen=True)
class Mounted:
    """A cgroup hierarchy as mounted here: where, which part of it, with which controllers."""

    point: str
    root: str
    options: frozenset[str]

    def path_of(self, member: str) -> Path:
        """The directory of a cgroup path (as /proc/self/cgroup gives it) under this mount."""
        root = "" if self.root == "/" else self.root
        inside = member[len(root) :] if root and member.startswith(root) else member
        return Path(self.point + inside)


def _mounts(mountinfo: Path) -> dict[str, list[Mounted]]:
    """cgroup and cgroup2 mounts with their super options (which controllers), by type."""
    found: dict[str, list[Mounted]] = {}
    with contextlib.suppress(OSError):
        for line in mountinfo.read_text().splitlines():
            fields = line.split()
            separator = fields.index("-")
            kind, options = fields[separator + 1], frozenset(fields[separator + 3].split(","))
            if kind in ("cgroup", "cgroup2"):
                mount = Mounted(_unescape(fields[4]), _unescape(fields[3]), options)
                found.setdefault(kind, []).append(mount)
    return found


def _memberships(cgroup_file: Path) -> dict[str, str]:
    """controller -> this process's path in its hierarchy ("" for v2's)."""
    found = {}
    with contextlib.suppress(OSError):
        for line in cgroup_file.read_text().splitlines():
            _id, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                found[controller] = path.rstrip("/") if path != "/" else ""
    return found


def _unescape(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _write(path: Path, value: object) -> None:
    with open(path, "w") as handle:
        handle.write(str(value))


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
