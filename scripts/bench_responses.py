"""The Responses sections of scripts/benchmark.py (run through it, on its system): what a Response costs
next to what a run costs, measured in the same run on the same stack.

- responses          one client, create → `response.completed` over a stream (p50/p95), beside a run's
                     create → `thread.run.completed`; then 8 SDK clients streaming each kind in turn: server
                     CPU per completed stream for each component;
- responses-capacity R background responses created at once, 30-word replies at 100 ms a word, one
                     `orchestrator worker --concurrency R`: peak in flight, all-completed time against the
                     ideal, worker RSS, every response completed with one message item;
- responses-replay   20 readers replaying a 2,000-word response's stream and then stalling (reading nothing):
                     the api process's memory while they hang on, against idle.
"""

from __future__ import annotations

import asyncio
import socket
import time

import httpx2 as httpx
import openai
import psycopg

from scripts.benchlib import (
    THIRTY_WORD_REPLY,
    InFlight,
    ms,
    percentile,
    post_all,
    psycopg_url,
    run_threads,
    setup_tenant,
    streamed_run,
    tree_rss_mb,
)


def streamed_response(http: httpx.Client, base: str, headers: dict, text: str) -> float:
    started = time.perf_counter()
    body = {"model": "local", "input": text, "stream": True}
    elapsed = float("nan")
    with http.stream("POST", f"{base}/v1/responses", headers=headers, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line == "event: response.completed":
                elapsed = time.perf_counter() - started
                break
    return elapsed


def measure(system, args) -> None:
    """Latency at one client, then CPU per stream at 8 clients: runs and responses, alternated."""
    with system.stack(concurrency=args.concurrency) as stack:
        key, headers, assistant_id = setup_tenant(stack)
        with httpx.Client(timeout=60) as http:
            for _ in range(3):
                streamed_run(http, stack.base, headers, assistant_id, "warm up")
                streamed_response(http, stack.base, headers, "warm up")
            runs, responses = [], []
            for i in range(args.runs):  # alternated: the machine's drift hits both alike
                runs.append(streamed_run(http, stack.base, headers, assistant_id, f"hello {i}"))
                responses.append(streamed_response(http, stack.base, headers, f"hello {i}"))
        print(f"latency, 1 client, {args.runs} of each, create → completed, streamed:")
        for name, values in (("run", runs), ("response", responses)):
            print(f"  {name:8} p50 {ms(percentile(values, 50))}  p95 {ms(percentile(values, 95))}")
        for name in ("run", "response", "run", "response"):
            _cpu(system, stack, key, assistant_id, name, args.seconds)


def _cpu(system, stack, key: str, assistant_id: str, kind: str, seconds: float) -> None:
    done: list[float] = []
    deadline = [0.0]

    def client() -> None:
        sdk = openai.OpenAI(base_url=stack.base + "/v1", api_key=key, max_retries=0, timeout=60)
        while time.perf_counter() < deadline[0]:
            started = time.perf_counter()
            if kind == "run":
                with sdk.beta.threads.create_and_run_stream(
                    assistant_id=assistant_id, thread={"messages": [{"role": "user", "content": "hello"}]}
                ) as stream:
                    stream.until_done()
                    assert stream.current_run.status == "completed"
            else:
                with sdk.responses.stream(model="local", input="hello") as stream:
                    stream.until_done()
                    assert stream.get_final_response().status == "completed"
            done.append(time.perf_counter() - started)

    deadline[0] = time.perf_counter() + 2
    run_threads(client, 8)
    done.clear()
    meter = system.meter(stack)
    meter.start()
    deadline[0] = time.perf_counter() + seconds
    run_threads(client, 8)
    meter.stop()
    count = len(done)
    parts = "  ".join(f"{name} {used / count * 1000:.1f} ms" for name, used in meter.used.items())
    total = sum(meter.used.values()) / count * 1000
    print(f"server CPU per completed streamed {kind}, 8 SDK clients, {count} in {seconds:.0f} s:")
    print(f"  {parts}  = {total:.1f} ms;  latency p50 {ms(percentile(done, 50))}")


# --- capacity ----------------------------------------------------------------------------------------------


async def _create_background(base: str, headers: dict, count: int) -> float:
    body = {"model": "local", "input": THIRTY_WORD_REPLY, "background": True}
    return await post_all(base, headers, "/v1/responses", body, count)


def measure_capacity(system, args) -> None:
    count = args.capacity_runs
    settings = {"ORCHESTRATOR_LOCAL_MODEL_DELAY_MS": "100", "ORCHESTRATOR_TENANT_WINDOW": "0"}
    with system.stack(concurrency=args.capacity_concurrency, processes=args.processes, **settings) as stack:
        _key, headers, _assistant = setup_tenant(stack)
        sampler = InFlight(stack.database_url, stack.processes["worker"].popen.pid)
        sampler.start()
        time.sleep(0.5)
        idle = tree_rss_mb(stack.processes["worker"].popen.pid)
        meter = system.meter(stack)
        meter.start()
        started = asyncio.run(_create_background(stack.base, headers, count))
        created = time.perf_counter()
        finished, statuses = _wait_all(stack.database_url, count, timeout=600)
        meter.stop()
        sampler.stop()
        bad = _not_one_message(stack.database_url)
    ideal = (created - started) + 29 * 0.1
    actual = finished - started
    print(
        f"responses capacity, {count} background responses at once, 30-word replies at 100 ms/word, "
        f"worker --concurrency {args.capacity_concurrency}:"
    )
    print(
        f"  peak in_progress {sampler.peak}; created in {created - started:.2f} s; all finished in "
        f"{actual:.2f} s vs ideal {ideal:.2f} s (ideal/actual {ideal / actual:.2f}); statuses {statuses}; "
        f"responses without exactly one message item: {bad}; worker RSS {idle:.0f} MB idle, "
        f"peak {sampler.rss:.0f} MB"
    )
    cpu = "  ".join(f"{name} {used:.1f} s" for name, used in meter.used.items())
    print(f"  CPU meanwhile: {cpu} (of {2 * actual:.0f} core-seconds on 2 cores)")


def _wait_all(database_url: str, count: int, timeout: float) -> tuple[float, dict[str, int]]:
    deadline = time.monotonic() + timeout
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        while True:
            statuses = dict(
                conn.execute(
                    "SELECT status, count(*) FROM runs WHERE api = 'responses' GROUP BY status"
                ).fetchall()
            )
            finished = sum(n for s, n in statuses.items() if s not in ("queued", "in_progress", "cancelling"))
            if finished >= count or time.monotonic() > deadline:
                return time.perf_counter(), statuses
            time.sleep(0.05)


def _not_one_message(database_url: str) -> int:
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        return conn.execute(
            """SELECT count(*) FROM runs r WHERE r.api = 'responses' AND
                 (SELECT count(*) FROM response_items i
                   WHERE i.response_id = r.id AND i.side = 'output' AND i.type = 'message') <> 1"""
        ).fetchone()[0]


# --- stalled replaying readers ------------------------------------------------------------------------------


def measure_replay(system, args, readers: int = 20) -> None:
    """Readers that replay a long response's stream, read its first bytes, then stop reading: the server
    must hold a page of it per reader, not the whole response."""
    words = " ".join(f"w{i}" for i in range(1998))  # a 2,000-word reply: thousands of stored events
    with system.stack(api_workers=1, concurrency=4) as stack:
        key, headers, _assistant = setup_tenant(stack)
        client = openai.OpenAI(base_url=stack.base + "/v1", api_key=key, max_retries=0, timeout=120)
        response = client.responses.create(model="local", input=words)
        events = sum(1 for _ in client.responses.retrieve(response.id, stream=True))
        api = stack.processes["api"].popen.pid
        idle = tree_rss_mb(api)
        stalled = [_stall(stack.base, key, response.id) for _ in range(readers)]
        time.sleep(3)
        held = tree_rss_mb(api)
        for sock in stalled:
            sock.close()
    print(
        f"{readers} stalled readers replaying a {events}-event response on one api process "
        f"(1 gunicorn worker): RSS {idle:.0f} MB idle → {held:.0f} MB with them hanging on "
        f"({(held - idle) / readers * 1024:.0f} KB each)"
    )


def _stall(base: str, key: str, response_id: str) -> socket.socket:
    """A raw connection that asks for the replay, reads a little, then reads no more (small buffers)."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = (
        f"GET /v1/responses/{response_id}?stream=true HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
    )
    sock.sendall(request.encode())
    sock.recv(1024)
    return sock
