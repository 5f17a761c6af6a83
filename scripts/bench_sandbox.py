"""Benchmark of the code sandbox: executions per second and the latency of `print(1)` through SandboxClient.

Starts a real `orchestrator sandbox` on a free port (its own state directory and token), then runs
`print(1)` in one session sequentially, and in four sessions at once. A benchmark, not a test:

    .venv/bin/python scripts/bench_sandbox.py [--executions 500] [--seconds 10] [--python .venv/jail/bin/python]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.sandbox.client import SandboxClient  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402

TOKEN = "bench-token"


def main() -> None:
    args = _arguments()
    with tempfile.TemporaryDirectory() as state:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        service = _start(port, state, args.python)
        try:
            _wait_healthy(url, service)
            client = SandboxClient(Settings(sandbox_url=url, sandbox_token=TOKEN))
            client.execute("bench-warm", "print(1)")  # the client's connections, the service's first request
            starts = [_timed(client, f"bench-new-{i}") for i in range(10)]
            median = 1000 * statistics.median(starts)
            print(f"first execution of a new session (its jail started): p50 {median:.1f} ms")
            _report("sequential, one session", *_sequential(client, args.executions))
            _report("4 sessions at once", *_concurrent(client, 4, args.seconds))
        finally:
            service.terminate()
            service.wait(30)


def _sequential(client: SandboxClient, count: int) -> tuple[int, float, list[float]]:
    client.execute("bench-seq", "print(1)")
    latencies = []
    started = time.perf_counter()
    for _ in range(count):
        latencies.append(_timed(client, "bench-seq"))
    return count, time.perf_counter() - started, latencies


def _concurrent(client: SandboxClient, sessions: int, seconds: float) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    for index in range(sessions):
        client.execute(f"bench-{index}", "print(1)")
    deadline = time.perf_counter() + seconds

    def loop(index: int) -> None:
        mine = []
        while time.perf_counter() < deadline:
            mine.append(_timed(client, f"bench-{index}"))
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies), time.perf_counter() - started, latencies


def _timed(client: SandboxClient, session: str) -> float:
    start = time.perf_counter()
    result = client.execute(session, "print(1)")
    elapsed = time.perf_counter() - start
    if result.logs != "1\n":
        raise SystemExit(f"unexpected result: {result}")
    return elapsed


def _report(name: str, count: int, elapsed: float, latencies: list[float]) -> None:
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{name}: {count / elapsed:.0f} executions/s ({count} in {elapsed:.1f} s); "
        f"print(1) latency p50 {1000 * cuts[49]:.2f} ms, p99 {1000 * cuts[98]:.2f} ms"
    )


def _start(port: int, state: str, python: str | None) -> subprocess.Popen:
    env = {**os.environ, "ORCHESTRATOR_SANDBOX_TOKEN": TOKEN, "ORCHESTRATOR_CODE_STATE_DIR": state}
    env["ORCHESTRATOR_LOG_LEVEL"] = "WARNING"
    if python:
        env["ORCHESTRATOR_CODE_PYTHON"] = python
    binary = Path(sys.executable).parent / "orchestrator"
    return subprocess.Popen([str(binary), "sandbox", "--host", "127.0.0.1", "--port", str(port)], env=env)


def _wait_healthy(url: str, service: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise SystemExit("orchestrator sandbox exited")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("orchestrator sandbox did not become healthy")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=500, help="sequential executions")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the concurrent phase")
    default = ROOT / ".venv" / "jail" / "bin" / "python"
    parser.add_argument(
        "--python", default=str(default) if default.exists() else None, help="ORCHESTRATOR_CODE_PYTHON"
    )
    return parser.parse_args()


if __name__ == "__main__":
    main()
