"""A throwaway Postgres server of its own: `initdb` in a directory of its own, on a free port, from
Debian's binaries. For measurements that must see only their own database's processes (the benchmark's CPU
per component) and for tests and the soak that stop or restart Postgres without touching the machine's
shared server. Run as the `postgres` user when this process is root, since Postgres refuses to run as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.support.processes import free_port

# For tests that restart the server: nothing they check needs the writes on disk.
UNSAFE_AND_FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _bin(name: str) -> str:
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's postgresql package")
    return found


class PostgresCluster:
    """initdb (at construction), start, stop, restart and remove one private cluster (trust auth)."""

    def __init__(self, workdir: Path | None = None, *, settings: dict[str, str] | None = None):
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="orch-pg-"))
        self.data = self.dir / "pgdata"
        self.port = free_port()
        self.settings = {"max_connections": "500", **(settings or {})}
        self._as_postgres = os.geteuid() == 0
        self.data.mkdir(parents=True)
        if self._as_postgres:
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(self.dir, "postgres", "postgres")
            for parent in self.dir.parents:  # temporary directories are private to root
                if parent.stat().st_mode & 0o005 != 0o005:
                    parent.chmod(parent.stat().st_mode | 0o005)
        self._run(
            _bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str, check: bool = True) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
        if check and done.returncode:
            raise RuntimeError(f"{command[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> PostgresCluster:
        options = " ".join(f"-c {key}={value}" for key, value in self.settings.items())
        options += f" -p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self._run(
            _bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start"
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.database_url(name)

    def postmaster_pid(self) -> int:
        for _ in range(50):
            pid_file = self.data / "postmaster.pid"
            if pid_file.exists():
                return int(pid_file.read_text().split()[0])
            time.sleep(0.1)
        raise RuntimeError("postgres wrote no postmaster.pid")

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
