"""Start `orchestrator dev` (the whole product in one process on SQLite) as a child process."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from orchestrator.embedded import database_url
from tests.support.clients import make_client
from tests.support.processes import BIN, Process, free_port

KEY_LINE = re.compile(r'API key \(tenant "dev"\): (sk-\S+)')


class Dev:
    """One `orchestrator dev` child process and what it printed. `command` starts it otherwise than the
    venv's `orchestrator dev` (./scripts/dev, or another user's Python); it is given the same arguments."""

    def __init__(
        self,
        data_dir: Path,
        log: Path,
        command: list[str] | None = None,
        cwd: Path | None = None,
        **settings: str,
    ):
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "ORCHESTRATOR_LOG_LEVEL": "INFO", **settings}
        args = ["--port", str(self.port), "--data-dir", str(data_dir)]
        self.process = Process(args if command else ["dev", *args], self.env, log, command, cwd)
        try:
            self.key = self._wait_for_key()
        except Exception:
            self.stop()
            raise

    def _wait_for_key(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = KEY_LINE.search(self.output())
            if found:
                return found.group(1)
            if self.process.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("orchestrator dev printed no key:\n" + self.process.tail())

    def output(self) -> str:
        return self.process.log.read_text(errors="replace")

    def client(self, flavour: str = "openai"):
        return make_client(flavour, self.base, self.key, max_retries=0, timeout=30)

    def create_key(self, tenant: str) -> str:
        """Another tenant's key, made by the CLI on the running process's SQLite file."""
        return self.cli("keys", "create", "--tenant", tenant).strip().splitlines()[-1]

    def cli(self, *args: str) -> str:
        """An `orchestrator` command on the running process's SQLite file; its stdout."""
        env = {**self.env, "DATABASE_URL": database_url(self.data_dir.resolve())}
        result = subprocess.run(
            [str(BIN), *args], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        return result.stdout

    def stop(self) -> int:
        self.process.stop(timeout=15)
        return self.process.popen.returncode
