"""CPU time and memory of a jail's processes, read by the host from /proc.

The interpreter is PID 1 of its PID namespace, so every process the code starts is its descendant (an
orphan is re-parented to it). A process's CPU time is its own plus that of the children it has reaped, so
summing the live tree counts everything once. Memory is the proportional set size, which shares the
copy-on-write pages of forked children out among them instead of counting each of them in full.
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


def tree_usage(root: int) -> Usage | None:
    """The whole tree under `root` (one pass over /proc), or None if `root` is gone."""
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    if root not in stats:
        return None
    tree = _descendants(root, {pid: stat[0] for pid, stat in stats.items()})
    cpu = sum(stats[pid][1] for pid in tree)
    return Usage(cpu, sum(_memory(pid) for pid in tree), len(tree))


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
