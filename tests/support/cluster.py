"""A throwaway Postgres server of its own: `initdb` in a temporary directory, on a free port.

For measurements that must see only their own database's processes (the benchmark's CPU per component)
and for tests that stop or restart Postgres without touching the machine's shared server. Run as the
`postgres` user when this process is root, since Postgres refuses to run as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.support.processes import free_port


def _bin(name: str) -> str:
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's postgresql package")
    return found


class PostgresCluster:
    def __init__(self, workdir: Path, *, settings: dict[str, str] | None = None):
        self.data = workdir / "pgdata"
        self.port = free_port()
        self.settings = {"max_connections": "500", "fsync": "on", **(settings or {})}
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        done = subprocess.run([*prefix, *command], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{command[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def init(self) -> PostgresCluster:
        self.data.mkdir(parents=True)
        if self._as_postgres:
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(self.data.parent, "postgres", "postgres")
            for parent in self.data.parent.parents:  # temporary directories are private to root
                if parent.stat().st_mode & 0o005 != 0o005:
                    parent.chmod(parent.stat().st_mode | 0o005)
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        return self

    def start(self) -> PostgresCluster:
        options = " ".join(f"-c {key}={value}" for key, value in self.settings.items())
        options += f" -p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self._run(
            _bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.data / "log"), "-w", "start"
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def postmaster_pid(self) -> int:
        for _ in range(50):
            pid_file = self.data / "postmaster.pid"
            if pid_file.exists():
                return int(pid_file.read_text().split()[0])
            time.sleep(0.1)
        raise RuntimeError("postgres wrote no postmaster.pid")
