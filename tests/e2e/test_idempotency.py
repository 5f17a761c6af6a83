"""`Idempotency-Key` on POSTs through the official SDK: a retry gets the first response and creates nothing,
against the production stack and `orchestrator dev`, with both client flavours."""

from __future__ import annotations

import threading
import uuid

import openai
import pytest

from tests.conftest import on_both_targets
from tests.support.clients import make_client

pytestmark = [pytest.mark.e2e, on_both_targets]
STACK_CLIENT = "azure"  # the pairing of client flavours and targets swapped (tests/conftest.py)


def key_header() -> dict[str, str]:
    return {"Idempotency-Key": "retry-" + uuid.uuid4().hex}


def test_a_retried_create_returns_the_first_object_and_creates_nothing(client):
    name = uuid.uuid4().hex
    headers = key_header()
    first = client.beta.assistants.create(model="local", name=name, extra_headers=headers)
    again = client.beta.assistants.with_raw_response.create(model="local", name=name, extra_headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parse().id == first.id and again.parse().created_at == first.created_at
    assert [a.id for a in client.beta.assistants.list(limit=100) if a.name == name] == [first.id]


def test_a_retried_run_create_is_the_same_run_not_an_active_run_conflict(client):
    # A tool run waits at requires_action, so the thread keeps an active run whatever the timing.
    lookup = {"type": "function", "function": {"name": "lookup"}}
    assistant = client.beta.assistants.create(model="local", tools=[lookup])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "please lookup"}])
    headers = key_header()
    run = client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=assistant.id, extra_headers=headers
    )
    retried = client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=assistant.id, extra_headers=headers
    )
    assert retried.id == run.id and retried.status == run.status == "queued"
    assert [r.id for r in client.beta.threads.runs.list(thread.id)] == [run.id]
    # And without the key the second create is the conflict it always was.
    with pytest.raises(openai.BadRequestError, match="already has an active run"):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)


def test_the_same_key_with_another_body_is_a_400_and_changes_nothing(client):
    headers = key_header()
    first = client.beta.threads.create(metadata={"n": "1"}, extra_headers=headers)
    with pytest.raises(openai.BadRequestError) as refused:
        client.beta.threads.create(metadata={"n": "2"}, extra_headers=headers)
    assert refused.value.code == "idempotency_key_reused"
    assert client.beta.threads.retrieve(first.id).metadata == {"n": "1"}


def test_keys_are_scoped_per_tenant(client, server):
    headers = key_header()
    mine = client.beta.threads.create(extra_headers=headers)
    other = make_client("openai", server.base, server.create_key("idem-other"), max_retries=0, timeout=30)
    theirs = other.beta.threads.create(extra_headers=headers)
    assert theirs.id != mine.id
    with pytest.raises(openai.NotFoundError):
        other.beta.threads.retrieve(mine.id)
    other.close()


def test_concurrent_retries_with_one_key_create_one_object(client):
    name, headers = uuid.uuid4().hex, key_header()
    results: list[str] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        try:
            results.append(client.beta.assistants.create(model="local", name=name, extra_headers=headers).id)
        except Exception as error:  # collected: the assertion below shows them
            errors.append(error)

    racers = [threading.Thread(target=create) for _ in range(8)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert errors == [] and len(set(results)) == 1 and len(results) == 8
    assert [a.id for a in client.beta.assistants.list(limit=100) if a.name == name] == results[:1]


def test_a_retried_streaming_run_reattaches_to_the_same_runs_stream_from_the_start(client):
    assistant = client.beta.assistants.create(model="local")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "stream me"}])
    headers = key_header()

    def events() -> list[tuple[str, str]]:
        stream = client.beta.threads.runs.create(
            thread_id=thread.id, assistant_id=assistant.id, stream=True, extra_headers=headers
        )
        return [(event.event, getattr(event.data, "id", "")) for event in stream]

    first, retried = events(), events()
    assert first[0][0] == "thread.run.created" and first[-1][0] == "thread.run.completed"
    assert retried == first  # the same run's events, from its start, ending where the first ended
    assert len(client.beta.threads.runs.list(thread.id).data) == 1


def test_one_key_raced_with_two_bodies_makes_one_change_and_answers_every_request_with_an_envelope(server):
    """Concurrent requests with one key: one makes the change; one that lost the key to it answers its
    outcome, or a 400 when its body differs (that check used to run inside the error handler: a bare 500)."""
    import httpx2 as httpx

    headers = {"Authorization": f"Bearer {server.key}", **key_header()}
    statuses: list[int] = []

    def post(number: int) -> None:
        body = {"metadata": {"n": str(number % 2)}}
        statuses.append(
            httpx.post(server.base + "/v1/conversations", headers=headers, json=body, timeout=30).status_code
        )

    threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) <= {200, 400, 409} and 200 in statuses, statuses
