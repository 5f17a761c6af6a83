"""Benchmark: starts the real system on this machine and prints figures. It is a benchmark, not a test.

    .venv/bin/python scripts/benchmark.py [--sections latency,cpu,throughput,noop,fanout,capacity,slow,streams]

Sections (all by default):

- latency     run creation → `thread.run.completed` at one client, streamed (p50/p95/p99);
- cpu         8 SDK clients streaming runs (`create_and_run_stream`): server CPU per completed run for each
              component (api, worker, Postgres, Redis, read from /proc), and the latency p50 meanwhile;
- throughput  completed runs per second with N concurrent clients (create thread and run, streamed);
- noop        a bare Celery no-op task's end-to-end rate on the same Redis, and the ratio to runs/s;
- fanout      W SSE watchers on one run in ONE api process, synthetic events, steady (10/s) and burst
              (100/s): delivery latency from publish (p50/p99) and the api process's memory;
- capacity    R runs created at once, replies of 30 words at 100 ms a word, one `orchestrator worker
              --concurrency R`: peak runs `in_progress` (sampled from the database), all-completed time against
              the ideal (creation time + one reply), worker RSS, every run completed once;
- slow        the same with a 5 s first-token pause, every run streamed by the async SDK: streams read to
              the end, timeouts;
- fairness    tenant A queues F runs (10,000), then tenant B one: how long B's run waits before it starts,
              with the tenant window at its default;
- tools       code_interpreter and file_search through runs: `print(1)` run latency (create → completed,
              streamed; a new thread, whose session starts, and the same thread again), executions per
              second with N clients each on its own thread, and a file_search run on a 100-file store
              against a plain run on the same stack;
- ingestion   10,000 files of 2–5 KB through the API into one store, lexical, worker --concurrency 200: time
              to all completed, files/s, worker peak RSS, pool errors, beside the goals
              (scripts/bench_ingestion.py; `--ingestion-embedding local-minilm` for the semantic one);
- retrieval   scripts/bench_retrieval.py on this benchmark's Postgres: ingestion MB/s (lexical, local
              embedder), search p50/p99 on stores of 10,000 and 100,000 chunks (`--retrieval-args`);
- search-http scripts/bench_search_http.py on this benchmark's Postgres: `vector_stores.search` through the
              SDK and a real `orchestrator api` on a 100,000-chunk store, lexical and hybrid: cold first search,
              p50/p99, a 5-query call against a 1-query call, beside the goals (`--search-http-args`);
- quality     scripts/bench_quality.py: labelled collections loaded through the API with the SDK, nDCG@10
              and recall@10/@50 of lexical, hybrid and reranked search beside a reference BM25 on the same
              documents, each next to its goal (`--quality-*` options);
- responses, responses-capacity, responses-replay: the Responses API beside runs (scripts/bench_responses.py);
- streams     S concurrent SDK streams (`create_and_run_stream`, async) on one `orchestrator api`, 2 s replies:
              errors, time to first event (p50/p99).
- relay       chat completions streamed from a stub upstream (scripts/bench_upstream.py), called directly and
              through one `orchestrator api` process side by side: time to first token and each chunk's
              journey (p50/p99; the relay's cost is the difference), with 1 and with R concurrent streams;
              errors; the api's CPU per 100-token streamed completion.

Everything runs on a throwaway Postgres server and redis-server of its own (so /proc shows only their
processes), with the local model. The load generator shares the machine's cores with what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
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
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import openai
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.adapters.redis_bus import channel, encode  # noqa: E402
from scripts import bench_ingestion, bench_quality, bench_responses  # noqa: E402
from scripts.benchlib import (  # noqa: E402
    THIRTY_WORD_REPLY,
    InFlight,
    System,
    ms,
    percentile,
    post_all,
    psycopg_url,
    run_threads,
    setup_tenant,
    streamed_run,
    tree_cpu,
    tree_rss_mb,
)
from tests.support.databases import throwaway_database  # noqa: E402
from tests.support.processes import Stack, free_port  # noqa: E402

SECTIONS = (
    "latency",
    "cpu",
    "throughput",
    "noop",
    "fanout",
    "capacity",
    "slow",
    "streams",
    "fairness",
    "tools",
    "retrieval",
    "search-http",
    "ingestion",
    "quality",
    "responses",
    "responses-capacity",
    "responses-replay",
    "relay",
)
# --- latency and throughput ----------------------------------------------------------------------


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


def measure_cpu(system: System, args) -> None:
    """Server CPU per completed streamed run, 8 SDK clients, local model without delay."""
    with system.stack(concurrency=args.concurrency) as stack:
        key, _headers, assistant_id = setup_tenant(stack)
        latencies: list[float] = []
        deadline = [0.0]

        def client() -> None:
            sdk = openai.OpenAI(base_url=stack.base + "/v1", api_key=key, max_retries=0, timeout=60)
            while time.perf_counter() < deadline[0]:
                started = time.perf_counter()
                with sdk.beta.threads.create_and_run_stream(
                    assistant_id=assistant_id, thread={"messages": [{"role": "user", "content": "hello"}]}
                ) as stream:
                    stream.until_done()
                    assert stream.current_run.status == "completed"
                latencies.append(time.perf_counter() - started)

        deadline[0] = time.perf_counter() + 3  # warm up: connections, pools, caches
        run_threads(client, 8)
        latencies.clear()
        meter = system.meter(stack)
        meter.start()
        deadline[0] = time.perf_counter() + args.seconds
        run_threads(client, 8)
        meter.stop()
    runs = len(latencies)
    parts = "  ".join(f"{name} {used / runs * 1000:.1f} ms" for name, used in meter.used.items())
    total = sum(meter.used.values()) / runs * 1000
    print(f"server CPU per completed streamed run, 8 SDK clients, {runs} runs in {args.seconds:.0f} s:")
    print(f"  {parts}  = {total:.1f} ms;  latency p50 {ms(percentile(latencies, 50))}")


def measure_celery_noop(redis_url: str, workdir: Path, tasks: int = 2000) -> float:
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT / "scripts")}
    celery = Path(sys.executable).parent / "celery"
    worker = subprocess.Popen(
        [str(celery), "-A", "bench_noop", "worker", "-c", "2", "-P", "prefork", "-Q", "bench_noop"]
        + ["--without-gossip", "--without-mingle", "-l", "warning"],
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


# --- fan-out ---------------------------------------------------------------------------------------


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


def measure_fanout(system: System, workdir: Path, watchers: int, events: int, interval: float):
    with throwaway_database(server=system.cluster.url) as database_url:
        stack = Stack(database_url, system.redis_url, workdir)
        stack.workdir.mkdir()
        try:
            stack.start_api()  # one gunicorn worker; no engine workers, so the run stays queued
            key, headers, assistant_id = setup_tenant(stack)
            run = httpx.post(
                f"{stack.base}/v1/threads/runs",
                headers=headers,
                json={
                    "assistant_id": assistant_id,
                    "thread": {"messages": [{"role": "user", "content": "x"}]},
                },
            ).json()
            path = f"/v1/threads/{run['thread_id']}/runs/{run['id']}/events?after=1000000"
            latencies: list[float] = []
            api = stack.processes["api"].popen.pid
            before = tree_rss_mb(api)
            ready = threading.Event()
            reader = threading.Thread(
                target=_watch_all, args=(stack.port, path, key, watchers, events, ready, latencies)
            )
            reader.start()
            ready.wait(120)
            time.sleep(1)
            client = redis.Redis.from_url(system.redis_url)
            held = tree_rss_mb(api)
            for seq in range(events):
                payload = {
                    "seq": 2_000_000 + seq,
                    "event": "thread.message.delta",
                    "data": {"sent": time.time()},
                }
                client.publish(channel(run["id"]), encode(payload))  # as a worker publishes it
                time.sleep(interval)
            reader.join(120)
            return latencies, before, held
        finally:
            stack.stop()


# --- capacity: hundreds of runs in flight ----------------------------------------------------------------


def wait_all_completed(database_url: str, runs: int, timeout: float) -> tuple[float, dict[str, int]]:
    deadline = time.monotonic() + timeout
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        while True:
            statuses = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
            finished = sum(
                n for s, n in statuses.items() if s in ("completed", "failed", "expired", "cancelled")
            )
            if finished >= runs or time.monotonic() > deadline:
                return time.perf_counter(), statuses
            time.sleep(0.05)


def doubled(database_url: str) -> int:
    """Runs with anything but exactly one assistant message and one step."""
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        return conn.execute(
            """SELECT count(*) FROM runs r WHERE
                 (SELECT count(*) FROM messages m WHERE m.run_id = r.id) <> 1
              OR (SELECT count(*) FROM run_steps s WHERE s.run_id = r.id) <> 1"""
        ).fetchone()[0]


async def _create_runs(base: str, headers: dict, assistant_id: str, count: int, text: str) -> float:
    body = {"assistant_id": assistant_id, "thread": {"messages": [{"role": "user", "content": text}]}}
    return await post_all(base, headers, "/v1/threads/runs", body, count)


def measure_capacity(system: System, args, *, first_token_ms: int = 0, streamed: bool = False) -> None:
    runs = args.capacity_runs
    settings = {
        "ORCHESTRATOR_LOCAL_MODEL_DELAY_MS": "100",
        "ORCHESTRATOR_LOCAL_MODEL_FIRST_TOKEN_MS": str(first_token_ms),
        # One tenant's runs: its window (100 by default, the fairness section's subject) would cap what
        # this section measures, the worker's own capacity.
        "ORCHESTRATOR_TENANT_WINDOW": "0",
    }
    with system.stack(concurrency=args.capacity_concurrency, processes=args.processes, **settings) as stack:
        key, headers, assistant_id = setup_tenant(stack)
        sampler = InFlight(stack.database_url, stack.processes["worker"].popen.pid)
        sampler.start()
        time.sleep(0.5)
        idle = tree_rss_mb(stack.processes["worker"].popen.pid)
        meter = system.meter(stack)
        meter.start()
        if streamed:
            started, created, outcomes = asyncio.run(_stream_runs(stack.base, key, assistant_id, runs))
        else:
            started = asyncio.run(_create_runs(stack.base, headers, assistant_id, runs, THIRTY_WORD_REPLY))
            created = time.perf_counter()
            outcomes = None
        finished, statuses = wait_all_completed(stack.database_url, runs, timeout=300)
        meter.stop()
        sampler.stop()
        bad = doubled(stack.database_url)
    reply = first_token_ms / 1000 + 29 * 0.1
    ideal = (created - started) + reply
    actual = finished - started
    label = f"capacity, {runs} runs at once, 30-word replies at 100 ms/word"
    if first_token_ms:
        label += f", {first_token_ms / 1000:.0f} s first-token pause"
    print(f"{label}, worker --concurrency {args.capacity_concurrency} --processes {args.processes}:")
    print(
        f"  peak in_progress {sampler.peak}; created in {created - started:.2f} s; all finished in "
        f"{actual:.2f} s vs ideal {ideal:.2f} s (ideal/actual {ideal / actual:.2f}); statuses {statuses}; "
        f"runs with a doubled or missing message/step: {bad}; worker RSS {idle:.0f} MB idle, "
        f"peak {sampler.rss:.0f} MB"
    )
    cpu = "  ".join(f"{name} {used:.1f} s" for name, used in meter.used.items())
    print(f"  CPU meanwhile: {cpu} (of {2 * actual:.0f} core-seconds on 2 cores)")
    if outcomes is not None:
        print(
            f"  SDK streams read to the end: {outcomes['completed']}/{runs}; errors {outcomes['errors']}"
            f" {outcomes['messages'][:3]}"
        )


async def _stream_runs(base: str, key: str, assistant_id: str, count: int, text: str = THIRTY_WORD_REPLY):
    """`count` concurrent `create_and_run_stream` helpers of the async SDK, each read to its end."""
    http = openai.DefaultAsyncHttpxClient(limits=httpx.Limits(max_connections=count + 10))
    client = openai.AsyncOpenAI(
        base_url=base + "/v1", api_key=key, max_retries=0, timeout=120, http_client=http
    )
    outcomes = {"completed": 0, "errors": 0, "messages": [], "first_event": []}

    async def one() -> None:
        started = time.perf_counter()
        try:
            async with client.beta.threads.create_and_run_stream(
                assistant_id=assistant_id, thread={"messages": [{"role": "user", "content": text}]}
            ) as stream:
                first = True
                async for _event in stream:
                    if first:
                        outcomes["first_event"].append(time.perf_counter() - started)
                        first = False
                if stream.current_run and stream.current_run.status == "completed":
                    outcomes["completed"] += 1
        except Exception as error:
            outcomes["errors"] += 1
            outcomes["messages"].append(f"{type(error).__name__}: {error}"[:200])

    started = time.perf_counter()
    tasks = [asyncio.create_task(one()) for _ in range(count)]
    # Creation is over once every stream has its first event (thread.created comes with the response).
    while len(outcomes["first_event"]) + outcomes["errors"] < count:
        await asyncio.sleep(0.02)
    created = time.perf_counter()
    await asyncio.gather(*tasks)
    await client.close()
    return started, created, outcomes


def measure_streams(system: System, args) -> None:
    """S concurrent SDK streams on one api, 2 s replies (20 words at 100 ms: 1.9 s after the first)."""
    count = args.streams
    settings = {"ORCHESTRATOR_LOCAL_MODEL_DELAY_MS": "100"}
    text = " ".join(f"w{i}" for i in range(18))  # a 20-word reply
    with system.stack(concurrency=count, processes=args.processes, **settings) as stack:
        key, _headers, assistant_id = setup_tenant(stack)
        started, _created, outcomes = asyncio.run(_stream_runs(stack.base, key, assistant_id, count, text))
        elapsed = time.perf_counter() - started
    first = outcomes["first_event"]
    print(
        f"{count} concurrent SDK streams (async create_and_run_stream) on one api (2 gunicorn workers), "
        f"2 s replies: errors {outcomes['errors']} {outcomes['messages'][:3]}, read to the end "
        f"{outcomes['completed']}/{count}, time to first event p50 {ms(percentile(first, 50))} "
        f"p99 {ms(percentile(first, 99))}, all done in {elapsed:.1f} s"
    )


# --- the chat completions relay ---------------------------------------------------------------------


class Journeys:
    """What the client saw of a set of streams: time to first token, each chunk's journey from the stub's
    write to the client's read (the stub stamps `sent` on CLOCK_MONOTONIC, shared by every process here)."""

    def __init__(self) -> None:
        self.first: list[float] = []
        self.chunks: list[float] = []
        self.errors: list[str] = []
        self.completed = 0


async def _stream_once(
    http, target: tuple[str, dict], body: dict, seen: Journeys, timed: bool = True
) -> None:

    url, headers = target
    started = time.monotonic()
    first = None
    try:
        async with http.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                seen.errors.append(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
                return
            async for line in response.aiter_lines():
                at = line.find('"sent":')
                if at < 0:
                    continue
                now = time.monotonic()
                sent = float(line[at + 7 : line.index("}", at)])
                if first is None:
                    first = now - started
                if timed:
                    seen.chunks.append(now - sent)
        if first is not None:
            seen.completed += 1
            if timed:
                seen.first.append(first)
    except Exception as error:
        seen.errors.append(f"{type(error).__name__}: {error}"[:200])


def _http(connections: int):
    limits = httpx.Limits(max_connections=connections + 10, max_keepalive_connections=connections + 10)
    return httpx.AsyncClient(limits=limits, timeout=120)


async def _one_at_a_time(targets: list[tuple[str, dict]], body: dict, rounds: int) -> list[Journeys]:
    """One stream at a time, to each target in turn (direct, relayed, direct, ...), so drift hits both."""
    seen = [Journeys() for _ in targets]
    async with _http(1) as http:
        for _ in range(rounds):
            for target, journeys in zip(targets, seen, strict=True):
                await _stream_once(http, target, body, journeys)
    return seen


async def _steady(
    target: tuple[str, dict], body: dict, clients: int, spread: float, seconds: float
) -> Journeys:
    """`clients` clients, each streaming one completion after another for `seconds`, their starts spread
    over one stream's length: about `clients` streams in flight at every moment. A client's first stream
    (which opens its connection) is not timed."""
    seen = Journeys()
    async with _http(clients) as http:
        stop = time.monotonic() + seconds

        async def client(offset: float) -> None:
            await asyncio.sleep(offset)
            timed = False
            while time.monotonic() < stop:
                await _stream_once(http, target, body, seen, timed)
                timed = True

        await asyncio.gather(*(client(spread * i / clients) for i in range(clients)))
    return seen


@contextmanager
def _relay_stack(system: System, upstream: str):
    """One `orchestrator api` process (one gunicorn worker) routing the model `bench` to the stub."""
    with throwaway_database(server=system.cluster.url) as database_url:
        workdir = system.workdir / "relay"
        workdir.mkdir()
        routes = workdir / "models.yaml"
        routes.write_text(f"routes:\n  - match: bench\n    base_url: {upstream}\n")
        stack = Stack(
            database_url,
            system.redis_url,
            workdir,
            ORCHESTRATOR_LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            ORCHESTRATOR_MODELS_FILE=str(routes),
        )
        try:
            stack.start("api", "api", "--host", "127.0.0.1", "--port", str(stack.port), "--workers=1")
            stack.wait_healthy()
            yield stack
        finally:
            stack.stop()


def _added(label: str, direct: list[float], relayed: list[float]) -> str:
    if not direct or not relayed:
        return f"    {label}: no samples"
    figures = []
    for q in (50, 99):
        mine, theirs = percentile(relayed, q), percentile(direct, q)
        figures.append(f"p{q} {ms(mine)} vs {ms(theirs)} direct (+{ms(mine - theirs)})")
    return f"    {label}: " + "; ".join(figures)


def _report(direct: Journeys, relayed: Journeys, cpu: float) -> None:
    print(_added("time to first token", direct.first, relayed.first))
    print(_added("each chunk's journey", direct.chunks, relayed.chunks))
    print(
        f"    streams completed: direct {direct.completed}, relayed {relayed.completed}; errors: direct "
        f"{len(direct.errors)}, relayed {len(relayed.errors)} {relayed.errors[:2]}; api CPU per relayed "
        f"completion {ms(cpu)} (its idle CPU taken out)"
    )


class ApiCpu:
    """The api process's CPU for some work, less what it burns idle in as long (its timers and pollers)."""

    def __init__(self, pid: int):
        self.pid = pid
        started, before = time.monotonic(), tree_cpu(pid)
        time.sleep(5)
        self.idle = (tree_cpu(pid) - before) / (time.monotonic() - started)

    @contextmanager
    def measure(self, into: list[float]):
        started, before = time.monotonic(), tree_cpu(self.pid)
        yield
        into.append(tree_cpu(self.pid) - before - self.idle * (time.monotonic() - started))


def _steady_both(direct, relayed, body: dict, clients: int, spread: float, seconds: float, cpu: ApiCpu):
    """Direct, relayed, direct, relayed (drift hits both): the journeys of each, and the api's CPU."""
    seen = {"direct": Journeys(), "relayed": Journeys()}
    used: list[float] = []
    for _ in range(2):
        for name, target in (("direct", direct), ("relayed", relayed)):
            with cpu.measure(used if name == "relayed" else []):
                run = asyncio.run(_steady(target, body, clients, spread, seconds))
            mine = seen[name]
            mine.first += run.first
            mine.chunks += run.chunks
            mine.errors += run.errors
            mine.completed += run.completed
    return seen["direct"], seen["relayed"], sum(used) / max(seen["relayed"].completed, 1)


def measure_relay(system: System, args) -> None:
    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "bench_upstream.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
    )
    stub.stdout.readline()  # listening
    upstream = f"http://127.0.0.1:{port}/v1"
    tokens, clients = args.relay_tokens, args.relay_streams
    paces = [float(pace) for pace in str(args.relay_interval_ms).split(",")]
    try:
        with _relay_stack(system, upstream) as stack:
            key = stack.create_key("relay")
            direct = (f"{upstream}/chat/completions", {})
            relayed = (f"{stack.base}/v1/chat/completions", {"Authorization": f"Bearer {key}"})

            def body(pace: float) -> dict:
                return {
                    "model": "bench",
                    "messages": [{"role": "user", "content": "count"}],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "max_tokens": tokens,
                    "bench_interval_ms": pace,
                }

            asyncio.run(_one_at_a_time([direct, relayed], body(0), 5))  # warm both paths' connections
            cpu = ApiCpu(stack.processes["api"].popen.pid)
            print(
                f"relay: chat completions streamed from a stub upstream (scripts/bench_upstream.py), called "
                f"directly and through one `orchestrator api` process, {tokens}-token completions "
                f"(load average before: {os.getloadavg()[0]:.1f}; the api idles at {ms(cpu.idle)} CPU a second):"
            )
            used: list[float] = []
            with cpu.measure(used):
                asyncio.run(_one_at_a_time([relayed], body(0), args.relay_rounds))
            print(
                f"  api CPU per {tokens}-token streamed completion, one at a time, unpaced: {ms(used[0] / args.relay_rounds)}"
            )
            used = []
            with cpu.measure(used):
                one = asyncio.run(_one_at_a_time([direct, relayed], body(paces[0]), args.relay_rounds))
            print(
                f"  1 stream at a time, a chunk every {paces[0]:g} ms, {args.relay_rounds} streams each way:"
            )
            _report(*one, used[0] / max(one[1].completed, 1))
            for pace in paces:
                spread = tokens * pace / 1000
                seconds = max(3 * spread, 5)
                found = _steady_both(direct, relayed, body(pace), clients, spread, seconds, cpu)
                print(
                    f"  {clients} streams in flight (clients streaming back to back, {seconds:g} s twice each way), "
                    f"a chunk every {pace:g} ms ({clients * 1000 / pace:.0f} chunks/s; load average "
                    f"{os.getloadavg()[0]:.1f}):"
                )
                _report(*found)
    finally:
        stub.terminate()
        stub.wait(5)


# --- fairness ---------------------------------------------------------------------------------------


def measure_fairness(system: System, args) -> None:
    """Tenant A queues F runs at once, then tenant B creates one: B's wait before its run starts."""
    settings = {"ORCHESTRATOR_LOCAL_MODEL_DELAY_MS": "100"}
    text = " ".join(f"w{i}" for i in range(18))  # 2 s replies
    with system.stack(concurrency=args.capacity_concurrency, processes=args.processes, **settings) as stack:
        _key_a, headers_a, assistant_a = setup_tenant(stack, "tenant-a")
        _key_b, headers_b, assistant_b = setup_tenant(stack, "tenant-b")
        started = time.perf_counter()
        asyncio.run(_create_runs(stack.base, headers_a, assistant_a, args.fairness_runs, text))
        queued = time.perf_counter() - started
        body = {"assistant_id": assistant_b, "thread": {"messages": [{"role": "user", "content": text}]}}
        run = httpx.post(f"{stack.base}/v1/threads/runs", headers=headers_b, json=body, timeout=60).json()
        created = time.perf_counter()
        url = f"{stack.base}/v1/threads/{run['thread_id']}/runs/{run['id']}"
        while (state := httpx.get(url, headers=headers_b, timeout=60).json())["status"] == "queued":
            time.sleep(0.02)
        waited = time.perf_counter() - created
        with psycopg.connect(psycopg_url(stack.database_url), autocommit=True) as conn:
            left = conn.execute(
                "SELECT count(*) FROM runs WHERE status IN ('queued', 'in_progress')"
            ).fetchone()[0]
    print(
        f"fairness: tenant A queued {args.fairness_runs} runs in {queued:.0f} s, then tenant B one: B's run "
        f"started after {waited * 1000:.0f} ms (status {state['status']}), with {left} of A's runs still queued "
        f"or in progress; worker --concurrency {args.capacity_concurrency}, tenant window 100"
    )


# --- server-side tools ------------------------------------------------------------------------------


def _run_on_thread(
    http: httpx.Client, base: str, headers: dict, thread_id: str, assistant_id: str, text: str
):
    http.post(
        f"{base}/v1/threads/{thread_id}/messages", headers=headers, json={"role": "user", "content": text}
    )
    started = time.perf_counter()
    body = {"assistant_id": assistant_id, "stream": True}
    completed = False
    with http.stream("POST", f"{base}/v1/threads/{thread_id}/runs", headers=headers, json=body) as response:
        for line in response.iter_lines():
            completed = completed or line == "event: thread.run.completed"
            if line == "data: [DONE]":
                break
    return time.perf_counter() - started if completed else float("nan")


def measure_tools(system: System, args) -> None:
    from tests.support.sandbox import SandboxProcess

    sandbox = SandboxProcess(system.workdir / "sandbox-bench", code_concurrency=4)
    sandbox.workdir.mkdir()
    sandbox.start()
    settings = {"ORCHESTRATOR_SANDBOX_URL": sandbox.url, "ORCHESTRATOR_SANDBOX_TOKEN": sandbox.token}
    code = "Run this:\n```python\nprint(1)\n```"
    try:
        with system.stack(concurrency=args.concurrency, **settings) as stack:
            _key, headers, _plain = setup_tenant(stack)
            make = {"model": "local", "tools": [{"type": "code_interpreter"}]}
            coder = httpx.post(f"{stack.base}/v1/assistants", headers=headers, json=make).json()["id"]
            with httpx.Client(timeout=120) as http:

                def new_thread() -> str:
                    return http.post(f"{stack.base}/v1/threads", headers=headers, json={}).json()["id"]

                fresh, again = [], []
                for _ in range(args.runs // 2):
                    thread_id = new_thread()
                    fresh.append(_run_on_thread(http, stack.base, headers, thread_id, coder, code))
                    again.append(_run_on_thread(http, stack.base, headers, thread_id, coder, code))
                print(f"code_interpreter print(1) through a run, {len(fresh)} threads (create → completed):")
                for label, values in (("new thread (session starts)", fresh), ("same thread again", again)):
                    print(
                        f"  {label}: p50 {ms(percentile(values, 50))}  p95 {ms(percentile(values, 95))}"
                        f"  p99 {ms(percentile(values, 99))}"
                    )
                done = [0] * args.clients
                deadline = time.perf_counter() + args.seconds

                slots = iter(range(args.clients))

                def client() -> None:
                    index = next(slots)
                    with httpx.Client(timeout=120) as own:
                        thread_id = own.post(f"{stack.base}/v1/threads", headers=headers, json={}).json()[
                            "id"
                        ]
                        while time.perf_counter() < deadline:
                            _run_on_thread(own, stack.base, headers, thread_id, coder, code)
                            done[index] += 1

                started = time.perf_counter()
                run_threads(client, args.clients)
                print(
                    f"code_interpreter: {sum(done) / (time.perf_counter() - started):.1f} executions/s through runs, {args.clients} "
                    f"clients each on its own thread, sandbox concurrency 4"
                )
                _measure_search_run(http, stack.base, headers, args.runs)
    finally:
        sandbox.stop()


def _measure_search_run(http: httpx.Client, base: str, headers: dict, runs: int) -> None:
    ids = []
    for number in range(100):
        text = (
            f"Document {number}: the warehouse in city {number} ships parcel type {number * 7} on weekdays. "
            * 20
        )
        files = {"file": (f"doc{number}.txt", text.encode())}
        ids.append(
            httpx.post(
                f"{base}/v1/files", headers=headers, files=files, data={"purpose": "assistants"}
            ).json()["id"]
        )
    store = http.post(
        f"{base}/v1/vector_stores", headers=headers, json={"name": "bench", "file_ids": ids}
    ).json()
    while http.get(f"{base}/v1/vector_stores/{store['id']}", headers=headers).json()["status"] != "completed":
        time.sleep(0.2)
    make = {
        "model": "local",
        "tools": [{"type": "file_search"}],
        "tool_resources": {"file_search": {"vector_store_ids": [store["id"]]}},
    }
    searcher = http.post(f"{base}/v1/assistants", headers=headers, json=make).json()["id"]
    plain = http.post(f"{base}/v1/assistants", headers=headers, json={"model": "local"}).json()["id"]
    values, plain_values = [], []
    for number in range(runs):
        thread_id = http.post(f"{base}/v1/threads", headers=headers, json={}).json()["id"]
        question = f"Which parcel type ships from the warehouse in city {number % 100}?"
        values.append(_run_on_thread(http, base, headers, thread_id, searcher, question))
        thread_id = http.post(f"{base}/v1/threads", headers=headers, json={}).json()["id"]
        plain_values.append(_run_on_thread(http, base, headers, thread_id, plain, question))
    for label, measured in (
        ("file_search run on a 100-file store", values),
        ("plain run, same stack", plain_values),
    ):
        print(
            f"{label} ({runs} runs, create → completed): p50 {ms(percentile(measured, 50))}"
            f"  p95 {ms(percentile(measured, 95))}  p99 {ms(percentile(measured, 99))}"
        )


# --- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument(
        "--concurrency", type=int, default=16, help="worker --concurrency for latency/cpu/throughput"
    )
    parser.add_argument("--capacity-runs", type=int, default=500)
    parser.add_argument("--capacity-concurrency", type=int, default=500)
    parser.add_argument(
        "--processes", type=int, default=1, help="worker --processes for capacity/slow/streams"
    )
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--fairness-runs", type=int, default=10_000)
    parser.add_argument("--ingestion-files", type=int, default=10_000)
    parser.add_argument("--ingestion-batch", type=int, default=2000, help="files per file batch")
    parser.add_argument("--ingestion-embedding", default="", help="an embedding model (default: lexical)")
    parser.add_argument("--ingestion-timeout", type=float, default=1800)
    parser.add_argument("--retrieval-args", default="", help="arguments for scripts/bench_retrieval.py")
    parser.add_argument("--search-http-args", default="", help="arguments for scripts/bench_search_http.py")
    bench_quality.add_arguments(parser)
    parser.add_argument("--relay-streams", type=int, default=200, help="concurrent streams for relay")
    parser.add_argument("--relay-tokens", type=int, default=100, help="chunks per relayed completion")
    parser.add_argument(
        "--relay-interval-ms", default="20,100", help="the stub's pace between chunks (ms; a list: each)"
    )
    parser.add_argument(
        "--relay-rounds", type=int, default=40, help="sequential streams each way, one at a time"
    )
    args = parser.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    workdir = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    system = System(workdir)
    rate = None
    try:
        if "latency" in sections or "throughput" in sections:
            with system.stack(concurrency=args.concurrency) as stack:
                _key, headers, assistant_id = setup_tenant(stack)
                if "latency" in sections:
                    latencies = measure_latency(stack, headers, assistant_id, args.runs)
                    print(
                        f"run latency, 1 client, {args.runs} runs (create → thread.run.completed, streamed):"
                    )
                    print(
                        f"  p50 {ms(percentile(latencies, 50))}  p95 {ms(percentile(latencies, 95))}"
                        f"  p99 {ms(percentile(latencies, 99))}  mean {ms(statistics.mean(latencies))}"
                    )
                if "throughput" in sections:
                    rate = measure_throughput(stack, headers, assistant_id, args.clients, args.seconds)
                    print(
                        f"throughput, {args.clients} clients, {args.seconds:.0f} s: {rate:.1f} completed runs/s "
                        f"(engine concurrency {args.concurrency})"
                    )
        if "cpu" in sections:
            measure_cpu(system, args)
        if "noop" in sections:
            noop = measure_celery_noop(system.redis_url, workdir)
            ratio = f"; ratio runs/s ÷ no-op tasks/s = {rate / noop:.3f}" if rate else ""
            print(f"bare Celery no-op task (2 prefork, acks_late): {noop:.0f} tasks/s{ratio}")
        if "fanout" in sections and args.watchers:
            # Steady: one event every 100 ms. Burst: 100 events/s, a model streaming tokens to every watcher.
            for label, interval, events in (("steady", 0.1, 50), ("burst", 0.01, 200)):
                fan, before, held = measure_fanout(system, workdir / label, args.watchers, events, interval)
                print(
                    f"fan-out {label}, {args.watchers} watchers on one run, one api process, one event every "
                    f"{interval * 1000:.0f} ms: {len(fan)} deliveries, p50 {ms(percentile(fan, 50))}"
                    f"  p99 {ms(percentile(fan, 99))} from publish; api RSS {before:.0f} MB idle → {held:.0f} MB"
                )
        if "capacity" in sections:
            measure_capacity(system, args)
        if "slow" in sections:
            measure_capacity(system, args, first_token_ms=5000, streamed=True)
        if "streams" in sections:
            measure_streams(system, args)
        if "fairness" in sections:
            measure_fairness(system, args)
        if "tools" in sections:
            measure_tools(system, args)
        if "responses" in sections:
            bench_responses.measure(system, args)
        if "responses-capacity" in sections:
            bench_responses.measure_capacity(system, args)
        if "responses-replay" in sections:
            bench_responses.measure_replay(system, args)
        if "relay" in sections:
            measure_relay(system, args)
        if "ingestion" in sections:
            bench_ingestion.measure(system, args)
        if "retrieval" in sections:
            env = {**os.environ, "DATABASE_URL": system.cluster.url}
            command = [
                sys.executable,
                str(ROOT / "scripts" / "bench_retrieval.py"),
                *args.retrieval_args.split(),
            ]
            subprocess.run(command, env=env, check=True)
        if "search-http" in sections:
            env = {**os.environ, "DATABASE_URL": system.cluster.url}
            command = [
                sys.executable,
                str(ROOT / "scripts" / "bench_search_http.py"),
                f"--redis-url={system.redis_url}",
                *args.search_http_args.split(),
            ]
            subprocess.run(command, env=env, check=True)
        if "quality" in sections:
            bench_quality.measure(system, args)
    finally:
        system.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
