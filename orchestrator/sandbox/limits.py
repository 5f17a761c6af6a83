"""The limits of one execution, read once from the settings, and how each is enforced.

    limit         setting                          enforced by
    wall time     ORCHESTRATOR_CODE_TIMEOUT_SECONDS the host: SIGINT (KeyboardInterrupt), then a kill
    CPU time      ORCHESTRATOR_CODE_CPU_SECONDS     the host, summing the jail's processes in /proc; between
                                                     executions the jail is stopped (SIGSTOP) and whatever
                                                     the code left running besides the interpreter killed
    memory        ORCHESTRATOR_CODE_MEMORY_BYTES    RLIMIT_AS per process (MemoryError), and for the whole
                                                     session a memory cgroup (cgroup.py) where the host
                                                     allows one, else the host sampling the jail's
                                                     proportional set size
    processes     ORCHESTRATOR_CODE_PROCESSES       RLIMIT_NPROC in the jail's own user namespace
    file size     ORCHESTRATOR_CODE_FILE_BYTES      RLIMIT_FSIZE (SIGXFSZ ignored: writes fail with EFBIG)
    disk          ORCHESTRATOR_CODE_DISK_BYTES      the size of the /mnt/data, /tmp and /dev/shm tmpfs mounts
    open files    (OPEN_FILES)                      RLIMIT_NOFILE
    output        ORCHESTRATOR_CODE_OUTPUT_BYTES    the host, counting what it reads from the output pipe
    returned      ORCHESTRATOR_CODE_RETURN_BYTES    the driver and the host, on files and images sent back
                  ORCHESTRATOR_CODE_RETURN_FILES    the driver and the host: images and files per execution

A per-execution CPU limit cannot be an RLIMIT_CPU: the interpreter lives for the whole session and an
unprivileged process can never raise a hard limit again, so the host measures instead.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from orchestrator.settings import Settings

# After SIGINT the code gets this long to unwind before its interpreter is killed.
INTERRUPT_GRACE_SECONDS = 2.0
# How often the host samples the jail's CPU time and memory while code runs.
SAMPLE_SECONDS = 0.05
# Descriptors per process: pipes and sockets hold kernel memory no other limit counts without a cgroup.
OPEN_FILES = 1024


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float
    cpu_seconds: float
    memory_bytes: int
    processes: int
    file_bytes: int
    disk_bytes: int
    output_bytes: int
    return_bytes: int
    return_files: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            timeout_seconds=settings.code_timeout_seconds,
            cpu_seconds=settings.code_cpu_seconds,
            memory_bytes=int(settings.code_memory_bytes),
            processes=settings.code_processes,
            file_bytes=int(settings.code_file_bytes),
            disk_bytes=int(settings.code_disk_bytes),
            output_bytes=int(settings.code_output_bytes),
            return_bytes=int(settings.code_return_bytes),
            return_files=settings.code_return_files,
        )

    def rlimits(self) -> dict[str, int]:
        """The resource limits the driver sets on itself (soft = hard) before running any code.

        RLIMIT_NPROC counts the tasks of the jail's uid in the jail's own user namespace, threads
        included: the interpreter is one of them, so the code may start `processes` more.
        """
        names = {
            "RLIMIT_AS": self.memory_bytes,
            "RLIMIT_NPROC": self.processes + 1,
            "RLIMIT_FSIZE": self.file_bytes,
            "RLIMIT_NOFILE": OPEN_FILES,
            "RLIMIT_CORE": 0,
        }
        return {name: value for name, value in names.items() if hasattr(resource, name)}


def describe_bytes(count: int) -> str:
    """A size as people write it: 256 MiB, 64 KiB, 1.5 GiB, 100 bytes."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.4g} {unit}"
    return f"{count} bytes"


def describe_seconds(seconds: float) -> str:
    return f"{seconds:g} s"
