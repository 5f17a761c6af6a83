"""CPU time, memory and state of a jail's processes, read by the host from /proc.

The interpreter is PID 1 of its PID namespace, so every process the code starts is its descendant (an
orphan is re-parented to it). A process's CPU time is its own plus that of the children it has reaped, so
summing the live tree counts everything once. Memory is the proportional set size, which shares the
copy-on-write pages of forked children out among them instead of counting each of them in full. The tree
is walked through each task's `children` list, falling back to a pass over all of /proc where the kernel
has none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    memory_bytes: int
    processes: int


def cpu_seconds(pid: int) -> float | None:
    """The process's CPU time with that of its reaped children, or None if it is gone."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def tree_usage(root: int, *, memory: bool = True) -> Usage | None:
    """The whole tree under `root`, or None if `root` is gone; `memory` False skips the costly part."""
    stats = {pid: stat for pid in descendants(root) if (stat := _stat(pid)) is not None}
    if root not in stats:
        return None
    cpu = sum(stat[1] for stat in stats.values())
    used = sum(_memory(pid) for pid in stats) if memory else 0
    return Usage(cpu, used, len(stats))


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        children = _children(pid)
        if children is None:
            return _scan(root)
        found.append(pid)
        todo.extend(children)
    return found


def host_pid(root: int, inner: int) -> int | None:
    """The pid, in this PID namespace, of the process below `root` that the namespace one level down
    calls `inner` (from the NSpid line of each process's status)."""
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/status", "rb") as handle:
                line = next((row for row in handle if row.startswith(b"NSpid:")), b"")
        except OSError:
            continue
        fields = line.split()[1:]
        if len(fields) >= 2 and int(fields[1]) == inner:
            return pid
    return None


def stopped(pid: int) -> bool:
    """Whether every thread of the process is stopped (or gone)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    return all(_state(f"/proc/{pid}/task/{tid}/stat") in (b"T", b"t", b"Z", b"X", None) for tid in tasks)


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    return _state(f"/proc/{pid}/stat") not in (b"Z", b"X", None)


def _state(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    return text[text.rfind(b")") + 2 :][:1]


def _children(pid: int) -> list[int] | None:
    """The children of every thread of `pid` ([] if it is gone); None where the kernel keeps no list."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                found += [int(child) for child in handle.read().split()]
        except FileNotFoundError:
            if os.path.exists(f"/proc/{pid}/task/{tid}"):
                return None  # the thread exists: no children lists on this kernel
        except OSError:
            pass
    return found


def _scan(root: int) -> list[int]:
    """The tree under `root` from one pass over all of /proc."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)] = stat[0]
    return _descendants(root, parents) if root in parents else []


def _descendants(root: int, parents: dict[int, int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds including reaped children) from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2 :].split()  # the command name may hold spaces and parentheses
    ticks = sum(int(field) for field in fields[11:15])  # utime, stime, cutime, cstime
    return int(fields[1]), ticks / CLOCK_TICKS


def _memory(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0
