"""What one client can no longer do to the others, through raw sockets against the real `orchestrator api`:
stall its headers or its body for ever, hold every connection, or get a 500 or an HTML page for input that
gunicorn (not the app) refuses."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import httpx2 as httpx
import pytest

pytestmark = pytest.mark.e2e

LIMITS = {
    "ORCHESTRATOR_HEADER_TIMEOUT_SECONDS": "1.5",
    "ORCHESTRATOR_BODY_TIMEOUT_SECONDS": "1.5",
    "ORCHESTRATOR_MAX_CONNECTIONS_PER_CLIENT": "24",
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory, redis_url):
    from tests.support.databases import throwaway_database
    from tests.support.processes import Stack

    with throwaway_database() as database:
        stack = Stack(database, redis_url, tmp_path_factory.mktemp("limits"), **LIMITS)
        try:
            stack.start_api()
            stack.key = stack.create_key("limits")
            yield stack
        finally:
            stack.stop()


def connect(stack, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=10, source_address=(source, 0))
    return sock


def read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Status, headers and body of one response on a raw socket (read until the server closes)."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                length = _content_length(head)
                if length is not None and len(body) >= length:
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


def envelope(headers: dict, body: bytes) -> dict:
    assert headers["content-type"].startswith("application/json"), (headers, body)
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_a_body_that_stops_arriving_gets_a_408_envelope_once_its_time_is_up(limited):
    sock = connect(limited)
    started = time.monotonic()
    sock.sendall(
        b"POST /v1/threads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + limited.key.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b'{"metadata": {"a"'
    )
    status, headers, body = read_response(sock)
    elapsed = time.monotonic() - started
    assert status == 408 and envelope(headers, body)["code"] == "timeout"
    assert 1.4 < elapsed < 5
    assert sock.recv(1) == b""  # and the connection is closed
    sock.close()


def test_a_request_whose_headers_never_end_is_closed_once_its_time_is_up(limited):
    sock = connect(limited)
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    sock.settimeout(10)
    assert sock.recv(1) == b""
    assert 1.4 < time.monotonic() - started < 5
    sock.close()


def test_stalled_uploads_from_one_address_cannot_take_every_connection(limited):
    stalled = []
    try:
        for _ in range(24):
            sock = connect(limited)
            sock.sendall(b"POST /v1/threads HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            stalled.append(sock)
        time.sleep(0.2)
        refused = connect(limited)
        refused.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = read_response(refused)
        assert status == 429 and headers["retry-after"] == "1"
        assert "connections" in envelope(headers, body)["message"]
        refused.close()
        # Another address is served meanwhile.
        other = connect(limited, "127.0.0.2")
        other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_response(other)[0] == 200
        other.close()
    finally:
        for sock in stalled:
            sock.close()
    # Once the stalled ones are gone, the address is served again.
    deadline = time.monotonic() + 5
    while httpx.get(limited.base + "/healthz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(limited.base + "/healthz").status_code == 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"NOT A REQUEST LINE\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Many: 1\r\n" * 120 + b"\r\n", 431),
        (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    ],
    ids=["uri-too-long", "bad-request-line", "header-too-large", "too-many-headers", "bad-version"],
)
def test_requests_gunicorn_refuses_get_the_error_envelope(limited, request_bytes, status):
    sock = connect(limited)
    sock.sendall(request_bytes)
    got, headers, body = read_response(sock)
    assert got == status
    assert envelope(headers, body)["type"] == "invalid_request_error"
    sock.close()


@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"5;\x01=1\r\n{}\r\n0\r\n\r\n"],
    ids=["bad-size", "missing-terminator", "bad-extension"],
)
def test_a_malformed_chunked_body_is_a_400_envelope(limited, chunks):
    sock = connect(limited)
    sock.sendall(
        b"POST /v1/threads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + limited.key.encode() + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    )
    status, headers, body = read_response(sock)
    assert status == 400, body
    envelope(headers, body)
    sock.close()


@pytest.mark.parametrize("cursor", [str(2**31), str(2**63), "9" * 40, "-1", "1e3", "١٢"])
@pytest.mark.parametrize("where", ["query", "header"])
def test_a_cursor_out_of_range_or_not_a_number_is_a_400_before_the_stream_starts(limited, cursor, where):
    path = "/v1/threads/thread_abc/runs/run_abc/events"
    headers = {"Authorization": f"Bearer {limited.key}"}
    params = {}
    if where == "header":
        headers["Last-Event-ID"] = cursor.encode()
    else:
        params["after"] = cursor
    response = httpx.get(limited.base + path, headers=headers, params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == ("Last-Event-ID" if where == "header" else "after")


def test_the_largest_cursor_is_accepted_up_to_the_run_lookup(limited):
    response = httpx.get(
        limited.base + "/v1/threads/thread_abc/runs/run_abc/events",
        headers={"Authorization": f"Bearer {limited.key}"},
        params={"after": str(2**31 - 1)},
    )
    assert response.status_code == 404  # valid cursor; the run does not exist


def test_an_empty_model_and_an_unknown_include_are_400s(limited):
    auth = {"Authorization": f"Bearer {limited.key}"}
    response = httpx.post(limited.base + "/v1/assistants", headers=auth, json={"model": ""})
    assert response.status_code == 400 and response.json()["error"]["code"] == "empty_string"
    assistant = httpx.post(limited.base + "/v1/assistants", headers=auth, json={"model": "local"}).json()
    thread = httpx.post(limited.base + "/v1/threads", headers=auth, json={}).json()
    response = httpx.post(
        f"{limited.base}/v1/threads/{thread['id']}/runs",
        headers=auth,
        params={"include[]": "bogus"},
        json={"assistant_id": assistant["id"], "model": ""},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "include"
    response = httpx.get(
        f"{limited.base}/v1/threads/{thread['id']}/runs/run_abc/steps",
        headers=auth,
        params={"include[]": "bogus"},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "include"
    # Nothing was created by the refused run.
    runs = httpx.get(f"{limited.base}/v1/threads/{thread['id']}/runs", headers=auth).json()
    assert runs["data"] == []
