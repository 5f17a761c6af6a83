"""The ingestion section of scripts/benchmark.py (run through it, on its system): N small files (2–5 KB of
text, 10,000 by default) into one vector store through the HTTP API, on one `orchestrator worker
--concurrency 200` (the compose default), lexical (or with `--ingestion-embedding local-minilm`).

    upload every file (POST /v1/files, 32 at once) → file batches of at most --ingestion-batch files
    → poll until every store file has ended

Printed beside the goals (issue 23: all completed ≤ 180 s lexical, ≤ 600 s with the local embedder; worker
RSS ≤ 600 MB): the time to upload, to attach, to all completed (from the first upload), files/s, the worker's
peak RSS (the supervisor and every process under it, parsing processes included, sampled every 0.25 s; and by
process role at that peak: supervisor, runs, ingest, parser; and its peak PSS, where a page the processes share
counts once: what the tree takes of the machine's memory), the
number of files not completed, and the connection-pool errors in the worker's log (SQLAlchemy's `QueuePool
limit`, Redis' `Too many connections`).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path

import httpx2 as httpx
import psycopg

from scripts.benchlib import RssSampler, _processes, _tree, psycopg_url, setup_tenant

WORDS = [
    "archive",
    "ballast",
    "cadence",
    "delta",
    "ember",
    "fathom",
    "granite",
    "harbour",
    "island",
    "juniper",
    "kestrel",
    "lantern",
    "meadow",
    "nickel",
    "orchard",
    "pylon",
    "quarry",
    "ribbon",
    "saddle",
    "timber",
    "umbra",
    "valley",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
    "river",
    "mountain",
    "signal",
    "engine",
    "market",
    "theory",
    "garden",
    "window",
    "silver",
    "bridge",
    "castle",
    "forest",
]
POOL_ERRORS = ("QueuePool limit", "Too many connections")


def documents(count: int, seed: int = 23) -> list[bytes]:
    """`count` texts of 2–5 KB, of words drawn at random (a few numbered, so a search can find one)."""
    rng = random.Random(seed)
    texts = []
    for index in range(count):
        size, words = rng.randint(2048, 5120), [f"doc{index}"]
        length = len(words[0])
        while length < size:
            word = rng.choice(WORDS) if rng.random() > 0.05 else f"{rng.choice(WORDS)}{rng.randint(0, 999)}"
            words.append(word)
            length += len(word) + 1
        texts.append(" ".join(words).encode())
    return texts


async def upload_all(base: str, headers: dict, texts: list[bytes], in_flight: int = 32) -> list[str]:
    gate = asyncio.Semaphore(in_flight)
    limits = httpx.Limits(max_connections=in_flight)
    auth = {"Authorization": headers["Authorization"]}
    async with httpx.AsyncClient(timeout=httpx.Timeout(120, pool=None), limits=limits) as http:

        async def one(index: int, text: bytes) -> str:
            async with gate:
                for attempt in range(5):
                    answer = await http.post(
                        f"{base}/v1/files",
                        headers=auth,
                        data={"purpose": "assistants"},
                        files={"file": (f"doc{index}.txt", text, "text/plain")},
                    )
                    if answer.status_code == 200:
                        return answer.json()["id"]
                    await asyncio.sleep(0.2 * (attempt + 1))
                answer.raise_for_status()
                return ""

        return await asyncio.gather(*(one(index, text) for index, text in enumerate(texts)))


def attach_all(
    http: httpx.Client, base: str, headers: dict, store_id: str, ids: list[str], batch: int
) -> None:
    for start in range(0, len(ids), batch):
        answer = http.post(
            f"{base}/v1/vector_stores/{store_id}/file_batches",
            headers=headers,
            json={"file_ids": ids[start : start + batch]},
            timeout=600,
        )
        answer.raise_for_status()


def statuses(database_url: str, store_id: str) -> dict[str, int]:
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM vector_store_files WHERE vector_store_id = %s GROUP BY status",
            (store_id,),
        ).fetchall()
    return dict(rows)


def doubled_chunks(database_url: str) -> int:
    """Chunk sets with a seq stored twice, or more rows than their chunk_count."""
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM chunk_sets cs WHERE (SELECT count(*) FROM chunks c WHERE c.chunk_set_id = cs.id)"
            " NOT IN (0, cs.chunk_count) OR (SELECT count(*) - count(DISTINCT seq) FROM chunks c"
            " WHERE c.chunk_set_id = cs.id) > 0"
        ).fetchone()[0]


def role_of(pid: int) -> str | None:
    """supervisor, runs, ingest or parser: what a process under the worker's supervisor is."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    role = next((part for part in command.split() if part.startswith("--role=")), "")
    return role.removeprefix("--role=") or ("parser" if "retrieval.child" in command else "supervisor")


def worker_cpu(root: int) -> dict[str, float]:
    """CPU seconds of each process under the worker's supervisor, by its role."""
    table, found = _processes(), {}
    for pid in _tree(table, root):
        name = role_of(pid)
        if name is not None:
            found[name] = round(found.get(name, 0) + table[pid][1], 1)
    return found


class RoleRss(threading.Thread):
    """The worker's RSS by role, sampled every `period` seconds: each role's peak, and the roles' shares
    (and the time since start) at the peak of their sum, which is where a memory goal is missed."""

    def __init__(self, root: int, period: float = 0.25):
        super().__init__(daemon=True)
        self.root, self.period, self.started = root, period, time.perf_counter()
        self.peaks: dict[str, float] = {}
        self.at_peak: dict[str, float] = {}
        self.peak_at = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.period):
            self.sample()

    def sample(self) -> None:
        table, shares = _processes(), {}
        for pid in _tree(table, self.root):
            name = role_of(pid)
            if name is not None:
                shares[name] = shares.get(name, 0) + table[pid][2] / 1024
        for name, mb in shares.items():
            self.peaks[name] = max(self.peaks.get(name, 0), mb)
        if sum(shares.values()) > sum(self.at_peak.values()):
            self.at_peak, self.peak_at = shares, time.perf_counter() - self.started

    def stop(self) -> str:
        self._done.set()
        self.join(5)
        at_peak = ", ".join(f"{name} {mb:.0f}" for name, mb in sorted(self.at_peak.items()))
        peaks = ", ".join(f"{name} {mb:.0f}" for name, mb in sorted(self.peaks.items()))
        return f"at the peak ({self.peak_at:.0f} s in): {at_peak} MB; each role's own peak: {peaks} MB"


def measure(system, args) -> None:
    count, model = args.ingestion_files, args.ingestion_embedding
    settings = {"ORCHESTRATOR_EMBEDDING_MODEL": model} if model else {}
    goal = 600 if model else 180
    texts = documents(count)
    with system.stack(concurrency=200, **settings) as stack:
        _key, headers, _assistant = setup_tenant(stack)
        worker = RssSampler(stack.processes["worker"].popen.pid)
        worker.start()
        roles = RoleRss(stack.processes["worker"].popen.pid)
        roles.start()
        meter = system.meter(stack)
        meter.start()
        with httpx.Client(timeout=60) as http:
            store = http.post(f"{stack.base}/v1/vector_stores", headers=headers, json={"name": "bench"})
            store_id = store.json()["id"]
            started = time.perf_counter()
            ids = asyncio.run(upload_all(stack.base, headers, texts))
            uploaded = time.perf_counter() - started
            attach_all(http, stack.base, headers, store_id, ids, args.ingestion_batch)
            attached = time.perf_counter() - started
        deadline, counts = started + args.ingestion_timeout, {}
        while time.perf_counter() < deadline:
            counts = statuses(stack.database_url, store_id)
            if counts.get("in_progress", 0) == 0 and sum(counts.values()) == count:
                break
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        meter.stop()
        peak = worker.stop()
        by_role = roles.stop()
        shares = worker_cpu(stack.processes["worker"].popen.pid)
        log = stack.processes["worker"].log.read_text(errors="replace")
        errors = {name: log.count(name) for name in POOL_ERRORS}
        for name in POOL_ERRORS:
            if name in log:
                at = log.index(name)
                print(f"  first {name!r} in the worker's log: …{log[max(0, at - 1500) : at + 200]}")
        doubled = doubled_chunks(stack.database_url)
    kind = f"embedding {model}" if model else "lexical"
    completed = counts.get("completed", 0)
    print(f"ingestion, {count} files of 2–5 KB in one store, {kind}, worker --concurrency 200:")
    print(
        f"  uploaded in {uploaded:.1f} s ({count / uploaded:.0f} files/s), attached at {attached:.1f} s,"
        f" all ended at {elapsed:.1f} s (goal ≤ {goal} s): {completed / elapsed:.1f} files/s end to end,"
        f" {completed / max(1e-9, elapsed - attached):.1f} files/s after attaching"
    )
    print(
        f"  worker peak RSS {peak:.0f} MB, summed over every process of it (goal ≤ 600 MB); peak PSS"
        f" {worker.pss_peak:.0f} MB (shared pages counted once); statuses {counts};"
        f" pool errors {errors} (goal 0); chunk sets stored twice: {doubled}"
    )
    print(f"  worker RSS by process role, {by_role}")
    cpu = ", ".join(
        f"{name} {seconds:.0f} s ({seconds / count * 1000:.1f} ms a file)"
        for name, seconds in meter.used.items()
    )
    print(f"  CPU: {cpu}")
    print(f"  worker CPU by process (since start, parsing processes in their parent): {shares}")
