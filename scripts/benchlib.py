"""What the benchmarks share: the system under test (a throwaway Postgres server and redis-server, stacks
of the real processes on them), CPU and memory read from /proc per process tree, and figures."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import psycopg

from tests.support.databases import throwaway_database
from tests.support.pgcluster import PostgresCluster
from tests.support.processes import RedisServer, Stack

TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# --- the machine: processes, CPU, memory ------------------------------------------------------------


def _processes() -> dict[int, tuple[int, float, int]]:
    """pid → (parent pid, CPU seconds of it and its reaped children, RSS in kB) for every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        cpu = sum(int(value) for value in fields[11:15]) / TICKS  # utime stime cutime cstime
        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        table[int(entry.name)] = (int(fields[1]), cpu, rss)
    return table


def _tree(table: dict, root: int) -> list[int]:
    found, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _cpu, _rss) in table.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return [pid for pid in found if pid in table]


def tree_cpu(root: int) -> float:
    """CPU seconds used by a process and all its descendants, live or reaped (never counted twice: a child's
    time moves into its parent's cutime only once it is reaped)."""
    table = _processes()
    return sum(table[pid][1] for pid in _tree(table, root))


def tree_rss_mb(root: int) -> float:
    table = _processes()
    return sum(table[pid][2] for pid in _tree(table, root)) / 1024


class CpuMeter:
    """CPU seconds per component between `start` and `stop`."""

    def __init__(self, roots: dict[str, int]):
        self.roots = roots
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self.before = {name: tree_cpu(pid) for name, pid in self.roots.items()}

    def stop(self) -> None:
        self.used = {name: tree_cpu(pid) - self.before[name] for name, pid in self.roots.items()}


def tree_pss_mb(root: int) -> float:
    """The proportional set size of a process and all its descendants: a page shared by several processes
    counted once in all (split between them), where summing RSS counts it in each. What the tree's memory
    is to the machine (a container's limit counts shared pages once too)."""
    table, total = _processes(), 0
    for pid in _tree(table, root):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:  # gone, or no smaps_rollup (kernels before 4.14)
            continue
        total += next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)
    return total / 1024


class RssSampler(threading.Thread):
    """The peak RSS of a process tree (summed over its processes), and its peak PSS, sampled every `period`
    seconds."""

    def __init__(self, root: int, period: float = 0.25):
        super().__init__(daemon=True)
        self.root, self.period, self.peak, self.pss_peak = root, period, 0.0, 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.period):
            self.peak = max(self.peak, tree_rss_mb(self.root))
            self.pss_peak = max(self.pss_peak, tree_pss_mb(self.root))

    def stop(self) -> float:
        self._done.set()
        self.join(5)
        return max(self.peak, tree_rss_mb(self.root))


# --- the system under test --------------------------------------------------------------------------


class System:
    """The throwaway Postgres server and Redis every section's stack runs on."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.cluster = PostgresCluster(workdir / "postgres").start()
        self.redis = RedisServer(workdir)
        self.redis.start()
        self.redis_url = self.redis.url
        self._stacks = 0

    @contextmanager
    def stack(self, *, api_workers: int = 2, concurrency: int = 16, processes: int = 1, **settings: str):
        """api + worker + scheduler on a fresh database."""
        self._stacks += 1
        with throwaway_database(server=self.cluster.url) as database_url:
            workdir = self.workdir / f"stack{self._stacks}"
            env = {"ORCHESTRATOR_LOG_LEVEL": "WARNING", **settings}
            stack = Stack(database_url, self.redis_url, workdir, **env)
            workdir.mkdir()
            try:
                stack.start(
                    "api", "api", "--host", "127.0.0.1", "--port", str(stack.port), f"--workers={api_workers}"
                )
                stack.wait_healthy()
                # BENCH_BASELINE: the code under test is an older checkout (on PYTHONPATH) whose worker
                # command knows no --processes; before/after figures come from the same script.
                shared = [] if os.environ.get("BENCH_BASELINE") else [f"--processes={processes}"]
                stack.start("worker", "worker", f"--concurrency={concurrency}", *shared)
                stack.start_scheduler()
                stack.database_url = database_url
                yield stack
            finally:
                stack.stop()

    def meter(self, stack: Stack) -> CpuMeter:
        return CpuMeter(
            {
                "api": stack.processes["api"].popen.pid,
                "worker": stack.processes["worker"].popen.pid,
                "postgres": self.cluster.postmaster_pid(),
                "redis": self.redis.process.pid,
            }
        )

    def close(self) -> None:
        self.redis.kill()
        self.cluster.stop("immediate")


def setup_tenant(stack: Stack, name: str = "bench") -> tuple[str, dict, str]:
    key = stack.create_key(name)
    headers = {"Authorization": f"Bearer {key}", "OpenAI-Beta": "assistants=v2"}
    assistant = httpx.post(f"{stack.base}/v1/assistants", headers=headers, json={"model": "local"}).json()
    return key, headers, assistant["id"]


def psycopg_url(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://")


def streamed_run(http: httpx.Client, base: str, headers: dict, assistant_id: str, text: str) -> float:
    started = time.perf_counter()
    body = {
        "assistant_id": assistant_id,
        "stream": True,
        "thread": {"messages": [{"role": "user", "content": text}]},
    }
    elapsed = float("nan")
    with http.stream("POST", f"{base}/v1/threads/runs", headers=headers, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line == "event: thread.run.completed":
                elapsed = time.perf_counter() - started
            if line == "data: [DONE]":
                break
    return elapsed


def run_threads(target, count: int) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# 28 words of user text: the local model's reply ("You said: …") is 30 words.
THIRTY_WORD_REPLY = " ".join(f"w{i}" for i in range(28))


class InFlight(threading.Thread):
    """Samples, every 100 ms, how many runs are in progress (the database's view) and the worker's RSS."""

    def __init__(self, database_url: str, worker_pid: int):
        super().__init__(daemon=True)
        self.url, self.worker = psycopg_url(database_url), worker_pid
        self.peak = 0
        self.rss = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._done.wait(0.1):
                count = conn.execute("SELECT count(*) FROM runs WHERE status = 'in_progress'").fetchone()[0]
                self.peak = max(self.peak, count)
                if int(time.monotonic() * 10) % 5 == 0:  # reading /proc costs the machine too
                    self.rss = max(self.rss, tree_rss_mb(self.worker))

    def stop(self) -> None:
        self._done.set()
        self.join(5)


async def post_all(base: str, headers: dict, path: str, body: dict, count: int) -> float:
    """POST `body` to `path` `count` times at once, at most 200 in flight (10,000 at once would wait on the
    pool past any timeout: the fairness section's flood died in PoolTimeout); when they started."""
    limits = httpx.Limits(max_connections=200)
    gate = asyncio.Semaphore(200)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120, pool=None), limits=limits) as http:

        async def one() -> httpx.Response:
            async with gate:
                return await http.post(f"{base}{path}", headers=headers, json=body)

        started = time.perf_counter()
        answers = await asyncio.gather(*(one() for _ in range(count)))
        assert all(a.status_code == 200 for a in answers), {a.status_code for a in answers}
        return started
