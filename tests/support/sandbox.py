"""Small limits and the jail's Python for the sandbox tests, and the `orchestrator sandbox` process."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx2 as httpx
import pytest

from orchestrator.settings import Settings
from tests.support.processes import Process, free_port

ROOT = Path(__file__).resolve().parents[2]
# Made by ./scripts/test: a venv with matplotlib that the jail's user can read.
JAIL_PYTHON = ROOT / ".venv" / "jail" / "bin" / "python"

# Small enough to be quick, large enough for matplotlib (about 200 MB of address space, and its first
# import builds a font cache: seconds on a loaded machine). Tests of the wall-time limit lower it.
LIMITS = {
    "code_timeout_seconds": 8.0,
    "code_cpu_seconds": 30.0,  # above the wall time: CPU-limit tests set their own (a loaded machine)
    "code_memory_bytes": "256MiB",
    "code_processes": 8,
    "code_file_bytes": "1MiB",
    "code_disk_bytes": "8MiB",
    "code_output_bytes": "4KiB",
    "code_return_bytes": "4MiB",
    "code_concurrency": 4,
}

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def jail_python() -> str:
    if not JAIL_PYTHON.exists():
        pytest.skip("no .venv/jail (./scripts/test makes it)")
    return str(JAIL_PYTHON)


def sandbox_settings(state_dir: Path, **overrides) -> Settings:
    values = {**LIMITS, "code_python": jail_python(), "code_state_dir": str(state_dir), **overrides}
    return Settings(**values)


def as_environment(settings: dict) -> dict[str, str]:
    return {f"ORCHESTRATOR_{name.upper()}": str(value) for name, value in settings.items()}


class SandboxProcess:
    """`orchestrator sandbox` started as the CLI starts it, with the limits above."""

    def __init__(self, workdir: Path, token: str = "sandbox-test-token", **settings):
        self.workdir = workdir
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        values = {
            **LIMITS,
            "code_python": jail_python(),
            "code_state_dir": str(workdir / "state"),
            **settings,
        }
        self.env = {
            **os.environ,
            **as_environment(values),
            "ORCHESTRATOR_SANDBOX_TOKEN": token,
            # Secrets the service's environment has and the jail must not.
            "DATABASE_URL": "postgresql+psycopg://postgres:hunter2@127.0.0.1:5432/secret",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "OPENAI_API_KEY": "sk-must-not-leak",
        }
        self.process: Process | None = None

    def start(self) -> SandboxProcess:
        args = ["sandbox", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = Process(args, self.env, self.workdir / "sandbox.log")
        self.wait_healthy()
        return self

    def settings(self, **overrides) -> Settings:
        return Settings(sandbox_url=self.url, sandbox_token=self.token, **{**LIMITS, **overrides})

    def wait_healthy(self, timeout: float = 30) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.popen.poll() is not None:
                raise RuntimeError("orchestrator sandbox exited:\n" + self.process.tail())
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("orchestrator sandbox did not become healthy:\n" + self.process.tail())

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
