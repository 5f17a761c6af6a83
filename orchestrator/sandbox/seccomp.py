"""The jail's system call filter: a classic BPF program, built here and handed to bwrap (`--seccomp FD`).

bwrap installs it on the driver after setting the jail up, so it holds for every process the code starts
and cannot be removed. It refuses the calls code in a sandbox never needs and that widen the kernel's
surface or hold memory outside every limit:

    io_uring_*                   a second way into most of the kernel (refused with ENOSYS: callers fall back)
    System V IPC (shm, msg, sem) segments and queues that outlive the processes that made them
    memfd_create, memfd_secret   anonymous files no tmpfs size bounds, when no cgroup counts the session's
                                 memory (cgroup.py); with one they are counted and allowed
    keyrings, bpf, perf events, userfaultfd, ptrace, mounts and namespaces, modules, kexec, clocks, swap,
    quotas, NUMA placement, file handles, fanotify, process accounting, syslog, reboot

Anything else is allowed: the jail's other walls (namespaces, no capabilities, limits) do the rest. A
call from another architecture's ABI (32-bit `int 0x80` on x86-64, the x32 ABI) is refused outright, since
its numbers differ and would pass the list unchecked. On an architecture this module does not know the
filter cannot be built; the sandbox then runs without one and says so (docs/sandbox.md).
"""

from __future__ import annotations

import errno
import functools
import os
import platform
import struct

# struct sock_filter, and the BPF and seccomp constants it is written with (linux/filter.h, seccomp.h).
INSTRUCTION = struct.Struct("=HBBI")
LOAD_WORD = 0x20  # BPF_LD | BPF_W | BPF_ABS
JUMP_EQUAL = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
JUMP_AT_LEAST = 0x35  # BPF_JMP | BPF_JGE | BPF_K
RETURN = 0x06  # BPF_RET | BPF_K
ALLOW = 0x7FFF0000
ERRNO = 0x00050000
NUMBER_OFFSET, ARCH_OFFSET = 0, 4  # struct seccomp_data
X32_BIT = 0x40000000

ARCHITECTURES = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}  # AUDIT_ARCH_*

# name: (x86_64 number, aarch64 number). Numbers from 403 on are the same on every architecture.
CALLS = {
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "shmget": (29, 194),
    "shmat": (30, 196),
    "shmctl": (31, 195),
    "shmdt": (67, 197),
    "semget": (64, 190),
    "semop": (65, 193),
    "semctl": (66, 191),
    "semtimedop": (220, 192),
    "msgget": (68, 186),
    "msgsnd": (69, 189),
    "msgrcv": (70, 188),
    "msgctl": (71, 187),
    "memfd_create": (319, 279),
    "memfd_secret": (447, 447),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "keyctl": (250, 219),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "unshare": (272, 97),
    "setns": (308, 268),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "reboot": (169, 142),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "acct": (163, 89),
    "quotactl": (179, 60),
    "settimeofday": (164, 170),
    "clock_settime": (227, 112),
    "clock_adjtime": (305, 266),
    "adjtimex": (159, 171),
    "syslog": (103, 116),
    "vhangup": (153, 58),
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    "fanotify_init": (300, 262),
    "mbind": (237, 235),
    "set_mempolicy": (238, 237),
    "migrate_pages": (256, 238),
    "move_pages": (279, 239),
}
# Refused with ENOSYS, as a kernel without them would: libraries that try them fall back.
MISSING = frozenset({"io_uring_setup", "io_uring_enter", "io_uring_register"})
# Allowed when a cgroup counts the session's memory: their pages are then charged to it.
COUNTED_BY_CGROUP = frozenset({"memfd_create", "memfd_secret"})


class Unsupported(Exception):
    """No filter can be built for this machine's architecture."""


def refused(*, cgroup: bool) -> list[str]:
    """The names of the calls the filter refuses."""
    return [name for name in CALLS if not (cgroup and name in COUNTED_BY_CGROUP)]


@functools.cache
def program(*, cgroup: bool, machine: str | None = None) -> bytes:
    """The filter as bwrap reads it: struct sock_filter instructions in this machine's byte order."""
    machine = machine or platform.machine()
    if machine not in ARCHITECTURES:
        raise Unsupported(f"no system call filter for the {machine} architecture")
    column = list(ARCHITECTURES).index(machine)
    denied = [(CALLS[name][column], _refusal(name)) for name in refused(cgroup=cgroup)]
    code = [
        (LOAD_WORD, 0, 0, ARCH_OFFSET),
        (JUMP_EQUAL, 1, 0, ARCHITECTURES[machine]),
        (RETURN, 0, 0, ERRNO | errno.ENOSYS),  # another ABI
        (LOAD_WORD, 0, 0, NUMBER_OFFSET),
    ]
    if machine == "x86_64":
        code += [(JUMP_AT_LEAST, 0, 1, X32_BIT), (RETURN, 0, 0, ERRNO | errno.ENOSYS)]
    for number, refusal in denied:
        code += [(JUMP_EQUAL, 0, 1, number), (RETURN, 0, 0, refusal)]
    code.append((RETURN, 0, 0, ALLOW))
    return b"".join(INSTRUCTION.pack(*instruction) for instruction in code)


def _refusal(name: str) -> int:
    return ERRNO | (errno.ENOSYS if name in MISSING else errno.EPERM)


def descriptor(data: bytes) -> int:
    """A pipe's read end holding `data` and then its end, for bwrap to read once (the caller closes it)."""
    read, write = os.pipe()
    try:
        os.write(write, data)  # a few hundred bytes: far below a pipe's buffer
    finally:
        os.close(write)
    return read
