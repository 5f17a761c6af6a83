"""What stalled stream clients cost the api process: many clients attach at ?after=0 to a long finished run
through real sockets, then stop reading; the api worker's resident memory must stay within a bound per
client however long the run (docs/operating.md: "Stalled stream readers")."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx2 as httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import sdk
from tests.support.polling import wait_for

pytestmark = [pytest.mark.e2e]

# One delta each: a 7.5 MB stream. It must be longer than what the kernel buffers for a stalled socket (the
# sender's buffer grows up to tcp_wmem's maximum, 4 MB by default), or every replay ends inside the kernel.
WORDS = 40_000
CLIENTS = 30
# The figure docs/operating.md states: what one stalled replaying client may add to the api worker's RSS.
PER_CLIENT_BYTES = 512 * 1024


def api_worker(stack) -> psutil.Process:
    (worker,) = psutil.Process(stack.processes["api"].popen.pid).children()
    return worker


def stalled_client(stack, path: str, key: str, window: int | None = 4096) -> socket.socket:
    sock = socket.socket()
    if window:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window)  # a slow reader's small window
    sock.connect(("127.0.0.1", stack.port))
    sock.sendall(f"GET {path}?after=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
    return sock


def streams_open(stack) -> float:
    metrics = httpx.get(stack.base + "/metrics").text
    for family in text_string_to_metric_families(metrics):
        if family.name == "orchestrator_streams_active":
            return family.samples[0].value
    raise AssertionError("no orchestrator_streams_active in /metrics")


def settled_rss(process: psutil.Process) -> int:
    """The RSS once the process is idle: every relay has filled its socket and stopped."""
    while True:
        busy = sum(process.cpu_times()[:2])
        time.sleep(1.0)
        if sum(process.cpu_times()[:2]) - busy < 0.05:
            return process.memory_info().rss


def test_stalled_clients_replaying_a_long_run_cost_the_api_a_bounded_amount_each(make_stack):
    stack = make_stack(workers=1, concurrency=1)
    client = sdk(stack)
    assistant = client.beta.assistants.create(model="local")
    text = " ".join(f"w{i}" for i in range(WORDS))
    created = time.monotonic()
    run = client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": text}]}
    )
    wait_for(
        lambda: client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id).status == "completed",
        timeout=120,
    )
    print(f"\nthe run completed {time.monotonic() - created:.1f} s after its creation")
    path = f"/v1/threads/{run.thread_id}/runs/{run.id}/events"
    worker = api_worker(stack)
    # One client read to the end first: the process has touched everything a replay needs once.
    started = time.monotonic()
    with stalled_client(stack, path, client.api_key, window=None) as reader:
        reader.settimeout(30)
        received = bytearray()
        while b"data: [DONE]" not in received[-64:]:  # then the chunked encoding's last chunk
            received += reader.recv(1 << 20)
    print(
        f"\none client read the {len(received) / 2**20:.1f} MB replay in {time.monotonic() - started:.1f} s"
    )
    assert received.count(b"event: thread.message.delta") >= WORDS
    send_buffer_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[-1])
    assert len(received) > 1.5 * send_buffer_max, "the replay would fit in a stalled socket's send buffer"
    before = settled_rss(worker)
    clients = [stalled_client(stack, path, client.api_key) for _ in range(CLIENTS)]
    try:
        attached = time.monotonic()
        after = settled_rss(worker)
        print(f"the stalled replays settled in {time.monotonic() - attached:.1f} s")
        assert streams_open(stack) == CLIENTS  # every one is still stalled mid-replay, not finished
        per_client = (after - before) / CLIENTS
        print(
            f"\napi worker RSS {before / 2**20:.1f} MB → {after / 2**20:.1f} MB with {CLIENTS} stalled "
            f"replays of a {WORDS}-delta run: {per_client / 1024:.0f} KB per client"
        )
        assert per_client < PER_CLIENT_BYTES
        # And the process still serves everyone else at once.
        started = time.monotonic()
        assert client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id).status == "completed"
        assert time.monotonic() - started < 1.0
    finally:
        for sock in clients:
            sock.close()
