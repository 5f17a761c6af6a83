"""The session registry, the ledger, input staging and the HTTP client, with fakes instead of jails."""

from __future__ import annotations

import json
import os
import threading
import time

import httpx2 as httpx
import pytest

from orchestrator.domain.errors import OrchestratorError, SandboxUnavailable
from orchestrator.sandbox.client import SandboxClient
from orchestrator.sandbox.ledger import Ledger
from orchestrator.sandbox.local import FileDigest, MissingFiles, _to_copy
from orchestrator.sandbox.port import Execution, InputFile, Outcome
from orchestrator.sandbox.registry import Session, Sessions
from orchestrator.sandbox.wire import execution_to_wire
from orchestrator.settings import Settings


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeInterpreter:
    def __init__(self):
        self.killed = False

    def kill(self):
        self.killed = True


def sessions(clock, **kwargs) -> Sessions:
    return Sessions(idle_seconds=kwargs.get("idle", 60), max_sessions=kwargs.get("most", 10), clock=clock)


def started(registry: Sessions, session_id: str) -> Session:
    with registry.hold(session_id, 1) as session:
        session.interpreter = FakeInterpreter()
    return session


# The registry


def test_an_idle_session_expires_with_its_interpreter_but_a_busy_one_does_not():
    clock = Clock()
    registry = sessions(clock, idle=60)
    idle, busy = started(registry, "idle"), started(registry, "busy")
    clock.now += 61
    with registry.hold("busy", 1):
        assert registry.expire() == 1
    assert idle.interpreter is None and registry._sessions.keys() == {"busy"}
    assert busy.interpreter is not None
    clock.now += 30
    assert registry.expire() == 0  # "busy" was used 30 s ago


def test_past_the_limit_the_least_recently_used_idle_session_goes_and_a_busy_one_stays():
    clock = Clock()
    registry = sessions(clock, most=2)
    oldest = started(registry, "a")
    clock.now += 1
    started(registry, "b")
    clock.now += 1
    with registry.hold("a", 1):  # the oldest is running code: it is not the one to go
        started(registry, "c")
        assert registry._sessions.keys() == {"a", "c"}
    assert oldest.interpreter is not None


def test_with_every_session_running_code_a_new_one_is_refused():
    registry = sessions(Clock(), most=1)
    with registry.hold("a", 1), pytest.raises(SandboxUnavailable, match="running code"):
        started(registry, "b")


def test_a_session_runs_one_execution_at_a_time_and_a_waiter_gives_up_after_its_wait():
    registry = sessions(Clock())
    order = []

    def second():
        with registry.hold("s", 5):
            order.append("second")

    with registry.hold("s", 1):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.2)
        order.append("first")
        with pytest.raises(SandboxUnavailable, match="earlier execution"), registry.hold("s", 0.05):
            pass
    thread.join()
    assert order == ["first", "second"]


def test_a_session_discarded_while_a_caller_waited_is_replaced_by_a_new_one():
    registry = sessions(Clock())
    found = []

    def waiter():
        with registry.hold("s", 5) as session:
            found.append(session)

    with registry.hold("s", 1) as first:
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.1)
        registry._sessions.pop("s")  # as close() does, while the first holds it
    thread.join()
    assert found[0] is not first and registry._sessions["s"] is found[0]


# The ledger


def test_the_ledger_remembers_sessions_across_instances_forgets_closed_ones_and_prunes_old_ones(tmp_path):
    Ledger(str(tmp_path)).touch("thread_1")
    ledger = Ledger(str(tmp_path))
    assert ledger.seen("thread_1") and not ledger.seen("thread_2")
    assert "thread_1" not in "".join(os.listdir(tmp_path))  # ids are stored as digests only
    ledger.forget("thread_1")
    assert not ledger.seen("thread_1")
    ledger.touch("old")
    (path,) = tmp_path.iterdir()
    os.utime(path, (0, 0))
    assert ledger.prune() == 1 and not ledger.seen("old")


def test_an_unusable_ledger_directory_remembers_nothing(tmp_path):
    (tmp_path / "file").write_text("")
    ledger = Ledger(str(tmp_path / "file" / "below"))
    ledger.touch("x")
    assert not ledger.seen("x")


# Input staging


def test_only_inputs_the_session_lacks_are_copied_and_a_lacking_digest_asks_for_its_data():
    session = Session("s")
    same, changed = InputFile("same.csv", b"1"), InputFile("changed.csv", b"new")
    session.digests = {"same.csv": same.sha256, "changed.csv": InputFile("x", b"old").sha256}
    assert _to_copy(session, [same, changed]) == [changed]
    with pytest.raises(MissingFiles) as missing:
        _to_copy(session, [FileDigest("same.csv", same.sha256), FileDigest("other.csv", "0" * 64)])
    assert missing.value.names == ["other.csv"]


# The client, over a fake transport


OK = Execution(logs="1\n", error=None, outcome=Outcome.OK)


def client(handler, url: str = "http://sandbox:8100") -> SandboxClient:
    settings = Settings(sandbox_url=url, sandbox_token="secret")
    return SandboxClient(settings, transport=httpx.MockTransport(handler))


def test_the_client_sends_digests_and_then_only_the_data_the_sandbox_asks_for():
    bodies = []

    def handler(request):
        body = json.loads(request.read())
        bodies.append(body)
        assert request.headers["Authorization"] == "Bearer secret"
        if len(bodies) == 1:
            return httpx.Response(409, json={"error": {"message": "m"}, "missing": ["b.txt"]})
        return httpx.Response(200, json=execution_to_wire(OK))

    files = [InputFile("a.txt", b"a"), InputFile("b.txt", b"b")]
    assert client(handler).execute("s", "print(1)", files) == OK
    assert [sorted(f) for f in bodies[0]["files"]] == [["name", "sha256"]] * 2
    assert [("data" in f) for f in bodies[1]["files"]] == [False, True]


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [(401, OrchestratorError, False), (400, OrchestratorError, False), (503, SandboxUnavailable, True)],
)
def test_the_clients_errors_say_whether_to_retry(status, error, retryable):
    handler = lambda request: httpx.Response(status, json={"error": {"message": "no"}})  # noqa: E731
    with pytest.raises(error) as raised:
        client(handler).execute("s", "print(1)")
    assert raised.value.retryable is retryable


def test_a_sandbox_that_keeps_asking_for_files_is_an_error_not_a_loop():
    handler = lambda request: httpx.Response(409, json={"missing": ["a"]})  # noqa: E731
    with pytest.raises(SandboxUnavailable, match="kept asking"):
        client(handler).execute("s", "x", [InputFile("a", b"1")])


def test_a_session_always_goes_to_the_same_sandbox_and_sessions_spread_over_all():
    sandbox = client(lambda r: httpx.Response(200), url="http://a:1, http://b:1,http://c:1/")
    assert sandbox.urls == ["http://a:1", "http://b:1", "http://c:1"]
    chosen = [sandbox.url_for(f"thread_{i}") for i in range(300)]
    assert chosen == [sandbox.url_for(f"thread_{i}") for i in range(300)]
    assert {url: chosen.count(url) > 60 for url in sandbox.urls} == dict.fromkeys(sandbox.urls, True)
    fewer = client(lambda r: httpx.Response(200), url="http://a:1,http://b:1")
    moved = [i for i in range(300) if chosen[i] != "http://c:1" and fewer.url_for(f"thread_{i}") != chosen[i]]
    assert moved == []  # removing a sandbox moves only its own sessions


def test_the_client_needs_a_url():
    with pytest.raises(ValueError):
        SandboxClient(Settings())
