"""Benchmark: starts the real system on this machine and prints figures.

    .venv/bin/python scripts/benchmark.py [--runs 60] [--clients 16] [--seconds 15] [--watchers 1000]

1. latency from run creation to completion at one client (p50/p95/p99), streamed (`stream: true`);
2. completed runs per second with N concurrent clients (create thread and run, streamed to completion);
3. a bare Celery no-op task's end-to-end rate on the same Redis, measured in the same run, and the ratio;
4. stream fan-out: W concurrent SSE watchers on one run in ONE api process, synthetic events published to
   the run's channel, steady (10 events/s) and in a burst (100 events/s): delivery latency from publish
   (p50/p99) and the api process's memory.

Uses DATABASE_URL's server (default local Postgres; a throwaway database) and a throwaway redis-server.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2 as httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.databases import throwaway_database  # noqa: E402
from tests.support.processes import Stack, free_port  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [
            shutil.which("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return process, f"redis://127.0.0.1:{port}/0"


def streamed_run(http: httpx.Client, base: str, headers: dict, assistant_id: str, text: str) -> float:
    started = time.perf_counter()
    body = {
        "assistant_id": assistant_id,
        "stream": True,
        "thread": {"messages": [{"role": "user", "content": text}]},
    }
    with http.stream("POST", f"{base}/v1/threads/runs", headers=headers, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line == "event: thread.run.completed":
                elapsed = time.perf_counter() - started
            if line == "data: [DONE]":
                break
    return elapsed


def measure_latency(stack: Stack, headers: dict, assistant_id: str, runs: int) -> list[float]:
    with httpx.Client(timeout=60) as http:
        for _ in range(3):
            streamed_run(http, stack.base, headers, assistant_id, "warm up")
        return [streamed_run(http, stack.base, headers, assistant_id, f"hello {i}") for i in range(runs)]


def measure_throughput(stack: Stack, headers: dict, assistant_id: str, clients: int, seconds: float) -> float:
    done = [0] * clients
    deadline = time.perf_counter() + seconds

    def client(index: int) -> None:
        with httpx.Client(timeout=60) as http:
            while time.perf_counter() < deadline:
                streamed_run(http, stack.base, headers, assistant_id, f"client {index}")
                done[index] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def measure_celery_noop(redis_url: str, workdir: Path, tasks: int = 2000) -> float:
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT / "scripts")}
    celery = Path(sys.executable).parent / "celery"
    worker = subprocess.Popen(
        [
            str(celery),
            "-A",
            "bench_noop",
            "worker",
            "-c",
            "2",
            "-P",
            "prefork",
            "-Q",
            "bench_noop",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "warning",
        ],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    sys.path.insert(0, str(ROOT / "scripts"))
    os.environ["REDIS_URL"] = redis_url
    import bench_noop

    counter = redis.Redis.from_url(redis_url)
    try:
        bench_noop.noop.delay()
        while int(counter.get("bench:noop:done") or 0) < 1:
            time.sleep(0.05)
        counter.set("bench:noop:done", 0)
        started = time.perf_counter()
        for _ in range(tasks):
            bench_noop.noop.delay()
        while int(counter.get("bench:noop:done") or 0) < tasks:
            time.sleep(0.01)
        return tasks / (time.perf_counter() - started)
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(10)


def _watch_all(
    port: int, path: str, key: str, total: int, expected: int, ready: threading.Event, latencies: list[float]
) -> None:
    """Hold `total` SSE connections with one selector loop on raw sockets: the client must cost far less
    than the server it measures (asyncio streams cost several times more per read)."""
    # The load generator shares this machine's cores with the server it measures: let the server go first.
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    selector = selectors.DefaultSelector()
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    seen: dict[socket.socket, int] = {}
    for _ in range(total):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        seen[sock] = 0
    waiting = set(seen)
    while waiting:  # every stream is open (headers read: subscribed and replayed) before publishing starts
        for key_, _mask in selector.select(timeout=1):
            if key_.fileobj in waiting and b"\r\n\r\n" in key_.fileobj.recv(65536):
                waiting.discard(key_.fileobj)
    ready.set()
    marker = b'"sent":'
    open_socks = total
    deadline = time.monotonic() + 120
    while open_socks and time.monotonic() < deadline:
        for key_, _mask in selector.select(timeout=1):
            sock = key_.fileobj
            chunk = sock.recv(65536)
            now = time.time()
            if not chunk:
                selector.unregister(sock)
                open_socks -= 1
                continue
            start = chunk.find(marker)
            while start >= 0:
                stop = chunk.find(b"}", start)
                latencies.append(now - float(chunk[start + len(marker) : stop]))
                seen[sock] += 1
                start = chunk.find(marker, stop)
            if seen[sock] >= expected:
                selector.unregister(sock)
                sock.close()
                open_socks -= 1


def api_rss_mb(stack: Stack) -> float:
    master = stack.processes["api"].popen.pid
    total = 0
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    for pid in [str(master), *children]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def measure_fanout(
    database_url: str, redis_url: str, workdir: Path, watchers: int, events: int = 50, interval: float = 0.1
):
    stack = Stack(database_url, redis_url, workdir)
    stack.workdir.mkdir()
    try:
        stack.start_api()  # one gunicorn worker; no engine workers, so the run stays queued
        key = stack.create_key("fanout")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(timeout=30) as http:
            assistant = http.post(
                f"{stack.base}/v1/assistants", headers=headers, json={"model": "local"}
            ).json()
            run = http.post(
                f"{stack.base}/v1/threads/runs",
                headers=headers,
                json={
                    "assistant_id": assistant["id"],
                    "thread": {"messages": [{"role": "user", "content": "x"}]},
                },
            ).json()
        path = f"/v1/threads/{run['thread_id']}/runs/{run['id']}/events?after=1000000"
        latencies: list[float] = []
        before = api_rss_mb(stack)

        ready = threading.Event()
        reader = threading.Thread(
            target=_watch_all, args=(stack.port, path, key, watchers, events, ready, latencies)
        )
        reader.start()
        ready.wait(120)
        time.sleep(1)
        client = redis.Redis.from_url(redis_url)
        held = api_rss_mb(stack)
        for seq in range(events):
            payload = {"seq": 2_000_000 + seq, "event": "thread.message.delta", "data": {"sent": time.time()}}
            client.publish(f"orch:run:{run['id']}", json.dumps(payload))
            time.sleep(interval)
        reader.join(120)
        return latencies, before, held
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    redis_process, redis_url = start_redis(workdir)
    try:
        with throwaway_database() as database_url:
            stack = Stack(database_url, redis_url, workdir, ORCHESTRATOR_LOG_LEVEL="WARNING")
            stack.start(
                "api",
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                str(stack.port),
                "--workers",
                str(args.api_workers),
            )
            stack.wait_healthy()
            stack.start_worker(concurrency=args.concurrency)
            stack.start_scheduler()
            key = stack.create_key("bench")
            headers = {"Authorization": f"Bearer {key}", "OpenAI-Beta": "assistants=v2"}
            assistant = httpx.post(
                f"{stack.base}/v1/assistants", headers=headers, json={"model": "local"}
            ).json()
            try:
                latencies = measure_latency(stack, headers, assistant["id"], args.runs)
                rate = measure_throughput(stack, headers, assistant["id"], args.clients, args.seconds)
            finally:
                stack.stop()
            noop = measure_celery_noop(redis_url, workdir)
            print(f"run latency, 1 client, {args.runs} runs (create → thread.run.completed, streamed):")
            print(
                f"  p50 {percentile(latencies, 50) * 1000:.1f} ms  p95 {percentile(latencies, 95) * 1000:.1f} ms"
                f"  p99 {percentile(latencies, 99) * 1000:.1f} ms  mean {statistics.mean(latencies) * 1000:.1f} ms"
            )
            print(
                f"throughput, {args.clients} clients, {args.seconds:.0f} s: {rate:.1f} completed runs/s "
                f"(api workers {args.api_workers}, engine concurrency {args.concurrency})"
            )
            print(
                f"bare Celery no-op task (2 prefork, acks_late): {noop:.0f} tasks/s; "
                f"ratio runs/s ÷ no-op tasks/s = {rate / noop:.3f}"
            )
            if args.watchers:
                # Steady: one event every 100 ms. Burst: 100 events/s, a model streaming tokens to every
                # watcher, more deliveries per second than one process can write one by one.
                for label, interval, events in (("steady", 0.1, 50), ("burst", 0.01, 200)):
                    fan, before, held = measure_fanout(
                        database_url, redis_url, workdir / label, args.watchers, events, interval
                    )
                    print(
                        f"fan-out {label}, {args.watchers} watchers on one run, one api process, one event "
                        f"every {interval * 1000:.0f} ms: {len(fan)} deliveries, p50 {percentile(fan, 50) * 1000:.1f} ms"
                        f"  p99 {percentile(fan, 99) * 1000:.1f} ms from publish;"
                        f" api RSS {before:.0f} MB idle → {held:.0f} MB holding the streams"
                    )
    finally:
        redis_process.terminate()
        redis_process.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
