"""The real `orchestrator sandbox` process, driven through SandboxClient as the workers will drive it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import httpx2 as httpx
import pytest

from orchestrator.domain.errors import OrchestratorError, SandboxUnavailable
from orchestrator.sandbox.client import SandboxClient
from orchestrator.sandbox.port import InputFile, Outcome
from orchestrator.settings import Settings
from tests.support.processes import BIN, free_port
from tests.support.sandbox import ROOT, SandboxProcess, needs_bwrap

pytestmark = [pytest.mark.e2e, needs_bwrap]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = SandboxProcess(tmp_path_factory.mktemp("sandbox-service")).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def client(service):
    client = SandboxClient(service.settings())
    yield client
    client.disconnect()


@pytest.fixture
def session() -> str:
    return f"thread_{uuid.uuid4().hex}"


class Recording(httpx.HTTPTransport):
    """The real transport, keeping every request body sent."""

    def __init__(self):
        super().__init__()
        self.bodies: list[dict] = []

    def handle_request(self, request):
        self.bodies.append(json.loads(request.read()))
        return super().handle_request(request)


def test_state_input_files_output_files_and_images_go_through_the_service(client, session):
    files = [InputFile("numbers.csv", b"n\n1\n2\n3\n")]
    first = client.execute(session, "rows = open('numbers.csv').read().split()[1:]\nlen(rows)", files)
    assert (first.logs, first.error, first.session_restarted) == ("3\n", None, False)
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([int(r) for r in rows])\n"
        "plt.show()\n"
        "open('/mnt/data/total.txt', 'w').write(str(sum(map(int, rows))))"
    )
    second = client.execute(session, code, files)
    assert second.error is None, second.error
    assert [(f.name, f.data, f.mime) for f in second.files] == [("total.txt", b"6", "text/plain")]
    assert len(second.images) == 1 and second.images[0].startswith(b"\x89PNG")


def test_an_unchanged_input_file_crosses_the_network_once_per_session(service, session):
    recording = Recording()
    client = SandboxClient(service.settings(), transport=recording)
    files = [InputFile("big.bin", b"\x00" * 100_000)]
    for _ in range(3):
        assert (
            client.execute(session, "import os\nprint(os.path.getsize('big.bin'))", files).logs == "100000\n"
        )
    client.disconnect()
    with_data = [b for b in recording.bodies if any("data" in f for f in b["files"])]
    assert len(recording.bodies) == 4  # the first call was answered 409 and repeated with the data
    assert len(with_data) == 1


def test_every_call_but_the_health_check_needs_the_token(service, session):
    body = {"session_id": session, "code": "print(1)", "files": []}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": service.token}):
        response = httpx.post(service.url + "/v1/execute", json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_token"
    assert httpx.get(service.url + "/healthz").json()["status"] == "ok"
    wrong = SandboxClient(Settings(sandbox_url=service.url, sandbox_token="wrong"))
    with pytest.raises(OrchestratorError, match="refused our ORCHESTRATOR_SANDBOX_TOKEN") as raised:
        wrong.execute(session, "print(1)")
    assert not raised.value.retryable
    wrong.disconnect()


def test_a_bad_request_is_a_400_envelope_and_runs_nothing(service):
    headers = {"Authorization": f"Bearer {service.token}"}
    bad = [
        {"code": "print(1)"},
        {"session_id": "s", "code": "x", "files": [{"name": "../etc/passwd", "sha256": "0" * 64}]},
        {"session_id": "s", "code": "x", "files": [{"name": "a", "sha256": "0" * 64, "data": "aGk="}]},
    ]
    for body in bad:
        response = httpx.post(service.url + "/v1/execute", json=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_the_jail_holds_inside_the_service(client, session):
    code = textwrap.dedent(
        f"""
        import os, socket
        print(sorted(k for k in os.environ if 'URL' in k or 'KEY' in k or 'TOKEN' in k))
        print(os.path.exists({str(ROOT / "README.md")!r}), os.path.exists('/home'), os.listdir({str(ROOT.parent)!r}))
        try:
            socket.create_connection(('127.0.0.1', 5432), timeout=2)
        except OSError as error:
            print(type(error).__name__)
        """
    )
    result = client.execute(session, code)
    assert result.logs == f"[]\nFalse False [{ROOT.name!r}]\nConnectionRefusedError\n"


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("while True:\n    pass", Outcome.TIMEOUT),  # the CPU limit is tested in the integration tier
        ("import time\ntime.sleep(60)", Outcome.TIMEOUT),
        ("block = bytearray(2 ** 31)", Outcome.MEMORY),
        ("import os\nwhile True:\n    os.fork()", Outcome.PROCESSES),
        ("open('huge', 'wb').write(b'x' * 2 ** 21)", Outcome.FILE_SIZE),
        ("print('x' * 10 ** 8)", Outcome.OUTPUT),
    ],
    ids=["loop", "sleep", "memory-bomb", "fork-bomb", "huge-file", "huge-print"],
)
def test_runaway_code_ends_as_an_error_and_the_service_serves_the_next_execution(
    client, session, code, outcome
):
    client.execute(session, "kept = 42")
    result = client.execute(session, code)
    assert result.outcome is outcome
    assert result.error
    after = client.execute(session, "print(kept)")
    assert (after.logs, after.session_restarted) == ("42\n", False)


def test_a_killed_and_restarted_service_reports_a_fresh_session_and_leaves_no_jail_behind(tmp_path):
    service = SandboxProcess(tmp_path).start()
    try:
        client = SandboxClient(service.settings())
        client.execute("thread_kept", "x = 1")
        jails = _descendants(service.process.popen.pid)
        assert jails, "the session's jail runs under the service"
        service.process.kill(signal.SIGKILL)
        service.process.stop()
        _wait_gone(jails)
        with pytest.raises(SandboxUnavailable):
            client.execute("thread_kept", "print(x)")
        service.start()
        result = client.execute("thread_kept", "print('x' in globals())")
        assert (result.logs, result.session_restarted) == ("False\n", True)
        assert client.execute("thread_new", "print(1)").session_restarted is False
        client.disconnect()
    finally:
        service.stop()


def test_an_unreachable_service_is_a_retryable_error():
    client = SandboxClient(Settings(sandbox_url=f"http://127.0.0.1:{free_port()}", sandbox_token="t"))
    with pytest.raises(SandboxUnavailable, match="unreachable") as raised:
        client.execute("s", "print(1)")
    assert raised.value.retryable


def test_the_service_refuses_to_start_without_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_SANDBOX_TOKEN"}
    result = subprocess.run(
        [str(BIN), "sandbox", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "ORCHESTRATOR_SANDBOX_TOKEN" in result.stderr


def test_the_client_waits_cooperatively_under_gevent(service):
    """Two greenlets each wait a second on the sandbox while a third keeps ticking: nothing blocks."""
    script = textwrap.dedent(
        f"""
        from gevent import monkey; monkey.patch_all()
        import time, gevent
        from orchestrator.sandbox.client import SandboxClient
        from orchestrator.settings import Settings
        client = SandboxClient(Settings(sandbox_url={service.url!r}, sandbox_token={service.token!r}))
        for name in ("g1", "g2"):
            client.execute(name, "pass")
        ticks = []
        def tick():
            while True:
                ticks.append(time.monotonic()); gevent.sleep(0.05)
        ticker = gevent.spawn(tick)
        started = time.monotonic()
        jobs = [gevent.spawn(client.execute, name, "import time; time.sleep(1)") for name in ("g1", "g2")]
        gevent.joinall(jobs, raise_error=True)
        elapsed = time.monotonic() - started
        ticker.kill()
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        print(round(elapsed, 2), len(ticks), round(max(gaps), 2))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    elapsed, ticks, longest_gap = map(float, result.stdout.split())
    assert elapsed < 1.8  # the two executions overlapped
    assert ticks >= 15 and longest_gap < 0.5  # and the loop kept running meanwhile


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    text = handle.read()
            except OSError:
                continue
            parents[int(entry)] = int(text[text.rfind(b")") + 2 :].split()[1])
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found += children
        todo += children
    return found


def _wait_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return
        time.sleep(0.1)
    raise AssertionError(f"jail processes outlived the service: {alive}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"
