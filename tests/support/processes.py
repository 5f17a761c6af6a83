"""Start the product's real processes (as the CLI does) for end-to-end and fault tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import redis

BIN = Path(sys.executable).parent / "orchestrator"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """One `orchestrator …` child in its own process group, so a kill takes its children too. `command` is
    what runs in place of the venv's `orchestrator` (./scripts/dev, another user's Python, …)."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        log: Path,
        command: list[str] | None = None,
        cwd: Path | None = None,
    ):
        self.args = args
        self.log = log
        self._handle = log.open("ab")
        self.popen = subprocess.Popen(
            [*(command or [str(BIN)]), *args],
            env=env,
            stdout=self._handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 3) -> None:
        if self.popen.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.popen.wait(5)
        self._handle.close()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Stack:
    """api + workers + scheduler against one database and one Redis."""

    def __init__(self, database_url: str, redis_url: str, workdir: Path, **settings: str):
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ORCHESTRATOR_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **settings,
        }
        self.processes: dict[str, Process] = {}

    def start(self, name: str, *args: str) -> Process:
        process = Process(list(args), self.env, self.workdir / f"{name}.log")
        self.processes[name] = process
        return process

    def start_api(self) -> Process:
        process = self.start("api", "api", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1")
        self.wait_healthy()
        return process

    def start_worker(self, name: str = "worker", concurrency: int = 2) -> Process:
        return self.start(name, "worker", "--concurrency", str(concurrency))

    def start_scheduler(self) -> Process:
        return self.start("scheduler", "scheduler")

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [str(BIN), *args], env=self.env, capture_output=True, text=True, timeout=60, check=True
        )
        return result.stdout

    def create_key(self, tenant: str) -> str:
        """A key for `tenant`, made in this process by the service `orchestrator keys create` calls: each
        CLI process took a second to start, for a setup step; `create_key_with_cli` is the CLI itself."""
        from orchestrator.adapters.ports import InMemoryBus, InMemoryQueue
        from orchestrator.context import Context
        from orchestrator.db.connection import make_engine, make_sessionmaker
        from orchestrator.services.keys import create_key
        from orchestrator.settings import Settings

        settings = Settings(DATABASE_URL=self.env["DATABASE_URL"], REDIS_URL=self.env["REDIS_URL"])
        engine = make_engine(settings, pool_size=1)
        try:
            _tenant_id, key = create_key(
                Context(settings, make_sessionmaker(engine), InMemoryQueue(), InMemoryBus()), tenant
            )
        finally:
            engine.dispose()
        return key

    def create_key_with_cli(self, tenant: str) -> str:
        return self.cli("keys", "create", "--tenant", tenant).strip().splitlines()[-1]

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("api did not become healthy:\n" + self.processes["api"].tail())

    def stop(self) -> None:
        """A teardown: every process group SIGKILLed at once. Celery's warm shutdown of an idle worker alone
        took 4 s; the tests of graceful shutdown send SIGTERM themselves and check how each process ends."""
        for process in self.processes.values():
            process.kill(signal.SIGKILL)
        for process in self.processes.values():
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{p.tail()}" for name, p in self.processes.items())


class RedisServer:
    """A redis-server on a fixed free port that the nemesis kills and starts again, empty."""

    def __init__(self, workdir: Path):
        self.port, self.workdir = free_port(), workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
