"""Metrics, structured logs, readiness and the run inspector, against the real processes."""

from __future__ import annotations

import json
import re
import threading
import uuid

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import tool_runs
from tests.support.browser import chromium, wait_until
from tests.support.clients import make_client
from tests.support.databases import throwaway_database
from tests.support.polling import wait_for
from tests.support.processes import Stack, free_port

pytestmark = pytest.mark.e2e

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def observed(redis_url, tmp_path_factory):
    """api + a worker serving its metrics on a port + scheduler, with their own database and queue."""
    with throwaway_database() as database:
        stack = Stack(
            database,
            redis_url,
            tmp_path_factory.mktemp("observed"),
            ORCHESTRATOR_CELERY_QUEUE=f"observed_{uuid.uuid4().hex[:8]}",
            ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="20",
            ORCHESTRATOR_KEEPALIVE_SECONDS="1",
        )
        stack.metrics_port = free_port()
        try:
            stack.start_api()
            stack.start("worker", "worker", "--concurrency", "2", "--metrics-port", str(stack.metrics_port))
            stack.start_scheduler()
            yield stack
        finally:
            stack.stop()


@pytest.fixture(scope="module")
def key(observed):
    return observed.create_key("observed")


@pytest.fixture(scope="module")
def client(observed, key):
    sdk = make_client("openai", observed.base, key, max_retries=0, timeout=30)
    yield sdk
    sdk.close()


@pytest.fixture(scope="module")
def tool_run(client):
    """A finished run that asked for a tool once: (thread, run)."""
    assistant = client.beta.assistants.create(model="local", instructions="Be brief.", tools=[WEATHER])
    thread, run = tool_runs.ask(client, assistant.id, 'call get_weather for {"city": "Oslo"}')
    run = tool_runs.answer(client, run, "SUNNY-21C")
    assert run.status == "completed"
    return thread, run


def scrape(url: str, **headers: str) -> dict:
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def samples(family, name: str | None = None, **labels: str) -> list:
    return [
        s
        for s in family.samples
        if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items())
    ]


# --- metrics -------------------------------------------------------------------------------------------


def test_the_api_metrics_count_runs_by_status_queue_depth_and_http_latency_by_route(
    observed, tool_run, client
):
    client.responses.create(model="local", input="counted apart")
    families = scrape(observed.base + "/metrics")
    assert {
        "orchestrator_runs",
        "orchestrator_queue_depth",
        "orchestrator_streams_active",
        "orchestrator_http_request_duration_seconds",
        "orchestrator_state_up",
    } <= set(families)
    assert "orchestrator_lease_takeovers" not in families  # a worker's count; here it would be a stuck 0
    assert samples(families["orchestrator_runs"], api="assistants", status="completed")[0].value >= 1
    assert samples(families["orchestrator_runs"], api="responses", status="completed")[0].value >= 1
    assert {s.labels["status"] for s in families["orchestrator_runs"].samples} >= {
        "queued",
        "requires_action",
    }
    assert samples(families["orchestrator_queue_depth"])[0].value >= 0
    assert all(s.value == 1 for s in families["orchestrator_state_up"].samples)
    http = families["orchestrator_http_request_duration_seconds"]
    submit = "/v1/threads/<thread_id>/runs/<run_id>/submit_tool_outputs"
    assert samples(http, "orchestrator_http_request_duration_seconds_count", route=submit, status="200")
    routes = {s.labels["route"] for s in http.samples}
    assert not any(re.search(r"(thread|run)_[A-Za-z0-9]{8}", route) for route in routes), routes


def test_the_worker_metrics_port_shows_turn_and_model_latency_sweeps_and_takeovers(observed, tool_run):
    families = scrape(f"http://127.0.0.1:{observed.metrics_port}/metrics")
    turns = families["orchestrator_turn_duration_seconds"]
    assert (
        samples(turns, "orchestrator_turn_duration_seconds_count", api="assistants", outcome="ok")[0].value
        >= 2
    )
    first = families["orchestrator_model_first_chunk_seconds"]
    assert samples(first, "orchestrator_model_first_chunk_seconds_count", provider="local")[0].value >= 2
    whole = families["orchestrator_model_duration_seconds"]
    assert (
        samples(whole, "orchestrator_model_duration_seconds_count", provider="local", outcome="ok")[0].value
        >= 2
    )
    # The scheduler's first sweep may not have come yet (every 2 s): wait for its count.
    wait_for(lambda: swept(f"http://127.0.0.1:{observed.metrics_port}/metrics"), timeout=20)
    # No worker died here; a takeover's count is checked in tests/integration/test_engine.py.
    takeovers = samples(families["orchestrator_lease_takeovers"], "orchestrator_lease_takeovers_total")
    assert [s.value for s in takeovers] == [0]


def swept(url: str) -> list:
    family = scrape(url).get("orchestrator_sweep_runs")
    return family and samples(family, "orchestrator_sweep_runs_total", action="requeued")


def test_an_open_event_stream_is_counted_while_it_lasts(observed, client):
    assistant = client.beta.assistants.create(model="local")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "slow " * 100}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    key = client.api_key
    url = f"{observed.base}/v1/threads/{thread.id}/runs/{run.id}/events"
    opened, release = threading.Event(), threading.Event()

    def watch():
        with httpx.stream("GET", url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as response:
            for _ in response.iter_lines():
                opened.set()
                if release.is_set():
                    return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert opened.wait(10)
        active = scrape(observed.base + "/metrics")["orchestrator_streams_active"].samples[0].value
        assert active >= 1
    finally:
        release.set()
        watcher.join(30)
    wait_for(lambda: scrape(observed.base + "/metrics")["orchestrator_streams_active"].samples[0].value == 0)


# --- logs ---------------------------------------------------------------------------------------------------


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_log_lines_are_json_and_carry_the_tenant_thread_and_run_ids(observed, tool_run, key):
    thread, run = tool_run
    api = observed.processes["api"].log.read_text()
    worker = observed.processes["worker"].log.read_text()
    api_lines, worker_lines = json_lines(api), json_lines(worker)
    assert len(api_lines) > 5 and len(worker_lines) > 3
    assert all({"event", "level", "timestamp", "role"} <= set(line) for line in api_lines + worker_lines)
    about_run = [line for line in api_lines if line.get("run_id") == run.id]
    assert about_run and all(line["thread_id"] == thread.id and line["tenant_id"] for line in about_run)
    turns = [line for line in worker_lines if line.get("run_id") == run.id and line["event"] == "turn ended"]
    assert len(turns) >= 2 and all(line["outcome"] == "ok" for line in turns)
    assert all(line["thread_id"] == thread.id and line["tenant_id"] and line["step_id"] for line in turns)
    assert key not in api and key not in worker


# --- readiness ----------------------------------------------------------------------------------------------


def test_readyz_answers_200_listing_postgres_redis_and_the_broker(observed):
    response = httpx.get(observed.base + "/readyz", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"postgres", "redis", "broker"}
    assert all(check["ok"] for check in body["checks"].values())


@pytest.mark.fault
def test_readyz_answers_503_naming_redis_and_the_broker_when_redis_stops(make_stack, fault_redis_proc):
    stack = make_stack(
        workers=0, scheduler=False, redis=f"redis://{fault_redis_proc.host}:{fault_redis_proc.port}/0"
    )
    assert httpx.get(stack.base + "/readyz", timeout=10).status_code == 200
    fault_redis_proc.stop()
    try:
        response = httpx.get(stack.base + "/readyz", timeout=20)
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["postgres"]["ok"] is True
        assert checks["redis"]["ok"] is False and checks["broker"]["ok"] is False
        assert checks["broker"]["error"]
    finally:
        fault_redis_proc.start()
    wait_for(lambda: httpx.get(stack.base + "/readyz", timeout=10).status_code == 200)


# --- the run inspector -------------------------------------------------------------------------------------


def test_the_inspector_api_needs_a_key_and_keeps_tenants_apart(observed, key, tool_run):
    thread, run = tool_run
    assert httpx.get(observed.base + "/ui/api/threads").status_code == 401
    mine = httpx.get(observed.base + f"/ui/api/runs/{run.id}", headers={"Authorization": f"Bearer {key}"})
    assert mine.status_code == 200
    detail = mine.json()
    seqs = [event["seq"] for event in detail["events"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    names = [event["event"] for event in detail["events"]]
    assert names[0] == "thread.run.created" and names[-1] == "thread.run.completed"
    assert "thread.run.requires_action" in names
    call = detail["steps"][0]["step_details"]["tool_calls"][0]
    assert call["function"]["output"] == "SUNNY-21C"
    listed = httpx.get(observed.base + "/ui/api/threads", headers={"api-key": key}).json()["data"]
    assert thread.id in {t["id"] for t in listed}
    other = {"Authorization": f"Bearer {observed.create_key('someone-else')}"}
    assert httpx.get(observed.base + f"/ui/api/runs/{run.id}", headers=other).status_code == 404
    assert httpx.get(observed.base + f"/ui/api/threads/{thread.id}/runs", headers=other).status_code == 404
    assert thread.id not in {
        t["id"] for t in httpx.get(observed.base + "/ui/api/threads", headers=other).json()["data"]
    }


def test_the_inspector_api_shows_responses_and_conversations_only_to_their_tenant(observed, key, client):
    conversation = client.conversations.create(items=[{"role": "user", "content": "walled in"}])
    response = client.responses.create(model="local", input="walled", conversation=conversation.id)
    mine, other = ({"Authorization": f"Bearer {k}"} for k in (key, observed.create_key("someone-else")))
    for path in (f"responses/{response.id}", f"conversations/{conversation.id}"):
        assert httpx.get(f"{observed.base}/ui/api/{path}", headers=mine).status_code == 200
        assert httpx.get(f"{observed.base}/ui/api/{path}", headers=other).status_code == 404
    for path, found in (("responses", response.id), ("conversations", conversation.id)):
        assert found in {
            r["id"] for r in httpx.get(f"{observed.base}/ui/api/{path}", headers=mine).json()["data"]
        }
        assert found not in {
            r["id"] for r in httpx.get(f"{observed.base}/ui/api/{path}", headers=other).json()["data"]
        }
    assert httpx.get(f"{observed.base}/ui/api/runs/{response.id}", headers=mine).status_code == 400


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module's page tests."""
    with chromium(tmp_path_factory.mktemp("chromium") / "profile") as driver:
        yield driver


def open_inspector(driver, url: str) -> None:
    driver.get("about:blank")  # a fresh load: a change of fragment alone would not reload the page
    driver.get(url)


def watch_live(driver, url: str, shot) -> None:
    """Open the inspector at `url` and wait until its live box has received some events; screenshot it."""
    open_inspector(driver, url)
    try:
        wait_until(driver, lambda d: int(page_text(d, "#live-count") or 0) > 10)
    finally:
        driver.save_screenshot(str(shot))
        print(f"\ninspector live screenshot: {shot}")


def page_text(driver, selector: str) -> str:
    """The text of every element matching `selector`, read in one go (the page re-renders as it goes)."""
    script = "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent).join(' ')"
    return driver.execute_script(script, selector)


def test_the_inspector_page_shows_a_tool_runs_timeline_steps_and_messages(
    observed, key, tool_run, browser, tmp_path
):
    thread, run = tool_run
    driver = browser
    open_inspector(driver, f"{observed.base}/ui#key={key}&thread={thread.id}&run={run.id}")
    wait_until(driver, lambda d: page_text(d, "#timeline-body") and page_text(d, "#steps"))
    assert key not in driver.current_url  # the page drops the key from the address at once
    timeline = page_text(driver, "#timeline-body")
    for event in (
        "thread.run.created",
        "thread.run.requires_action",
        "thread.run.step.completed",
        "thread.message.completed",
        "thread.run.completed",
    ):
        assert event in timeline
    steps = page_text(driver, "#steps")
    assert "get_weather" in steps and '"city": "Oslo"' in steps and "SUNNY-21C" in steps
    assert "SUNNY-21C" in page_text(driver, "#messages")
    assert run.id in page_text(driver, "#run-id") and "completed" in page_text(driver, ".runhead .pill")
    assert str(run.usage.total_tokens) in page_text(driver, "#summary")
    assert thread.id in page_text(driver, "#thread-list")
    shot = tmp_path / "inspector-tool-run.png"
    driver.save_screenshot(str(shot))
    print(f"\ninspector screenshot: {shot}")


def test_the_inspector_page_follows_a_running_run_live(observed, key, client, browser, tmp_path):
    assistant = client.beta.assistants.create(model="local")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "live " * 400}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    driver = browser
    watch_live(
        driver,
        f"{observed.base}/ui#key={key}&thread={thread.id}&run={run.id}",
        tmp_path / "inspector-live.png",
    )
    assert "live live live" in page_text(driver, "#live-text")
    # When the stream's leg ends the page reloads the run from the log.
    wait_until(driver, lambda d: "completed" in page_text(d, ".runhead .pill"), timeout=30)
    assert "thread.run.completed" in page_text(driver, "#timeline-body")


def click(driver, selector: str) -> None:
    driver.execute_script("document.querySelector(arguments[0]).click()", selector)


def test_the_inspector_page_shows_a_response_its_timeline_items_and_chain(
    observed, key, client, browser, tmp_path
):
    first = client.responses.create(model="local", input="the first question")
    more = "tell me more about the fjords, the mountains and the long light of the northern summer"
    second = client.responses.create(model="local", input=more, previous_response_id=first.id)
    deltas = sum(
        event.type == "response.output_text.delta"
        for event in client.responses.retrieve(second.id, stream=True)
    )
    driver = browser
    open_inspector(driver, f"{observed.base}/ui#key={key}&response={second.id}")
    wait_until(driver, lambda d: page_text(d, "#timeline-body") and page_text(d, "#output-items"))
    assert second.id in page_text(driver, "#response-id") and "completed" in page_text(
        driver, ".runhead .pill"
    )
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#timeline-body tr'))"
        ".map(r => [r.dataset.event, r.dataset.seq, r.dataset.count || null])"
    )
    assert rows[0] == ["response.created", "0", None] and rows[-1][0] == "response.completed"
    assert ["response.output_text.delta", str(deltas)] in [[event, count] for event, _seq, count in rows]
    assert deltas > 10 and len(rows) < deltas  # the deltas are one counted row
    assert more in page_text(driver, "#input-items")
    assert second.output_text in page_text(driver, "#output-items")
    summary = page_text(driver, "#summary")
    assert str(second.usage.total_tokens) in summary and first.id in summary
    responses = page_text(driver, "#response-list")
    assert first.id in responses and second.id in responses and f"after {first.id}" in responses
    driver.save_screenshot(str(tmp_path / "inspector-response.png"))
    click(driver, "#summary a")  # the previous response
    wait_until(driver, lambda d: first.id in page_text(d, "#response-id"))
    assert "the first question" in page_text(driver, "#input-items")
    print(f"\ninspector response screenshot: {tmp_path / 'inspector-response.png'}")


def test_the_inspector_page_shows_a_conversations_items_and_the_responses_that_used_it(
    observed, key, client, browser, tmp_path
):
    conversation = client.conversations.create(items=[{"role": "user", "content": "hello from the start"}])
    used = client.responses.create(model="local", input="what came before?", conversation=conversation.id)
    driver = browser
    open_inspector(driver, f"{observed.base}/ui#key={key}&view=conversations")
    wait_until(driver, lambda d: conversation.id in page_text(d, "#conversation-list"))
    click(driver, f'#conversation-list li[data-id="{conversation.id}"]')
    wait_until(driver, lambda d: page_text(d, "#conversation-responses"))
    assert conversation.id in page_text(driver, "#conversation-id")
    items = driver.execute_script(
        "return Array.from(document.querySelectorAll('#conversation-items .item')).map(e => e.textContent)"
    )
    assert len(items) == 3
    assert "hello from the start" in items[0] and "what came before?" in items[1]
    assert "assistant" in items[2] and used.output_text in items[2]
    assert used.id in page_text(driver, "#conversation-responses")
    driver.save_screenshot(str(tmp_path / "inspector-conversation.png"))
    click(driver, f'#conversation-responses li[data-id="{used.id}"]')
    wait_until(driver, lambda d: used.id in page_text(d, "#response-id"))
    assert conversation.id in page_text(driver, "#summary")
    print(f"\ninspector conversation screenshot: {tmp_path / 'inspector-conversation.png'}")


def test_the_inspector_page_follows_a_background_response_live(observed, key, client, browser, tmp_path):
    response = client.responses.create(model="local", input="live " * 250, background=True)
    driver = browser
    watch_live(
        driver,
        f"{observed.base}/ui#key={key}&response={response.id}",
        tmp_path / "inspector-live-response.png",
    )
    assert "live live live" in page_text(driver, "#live-text")
    [(event, count)] = stretches(driver)  # the deltas, stored and live, grow one counted row
    assert event == "response.output_text.delta" and count > 5
    # When the stream ends the page reloads the response from the log.
    wait_until(driver, lambda d: "completed" in page_text(d, ".runhead .pill"), timeout=30)
    assert "response.completed" in page_text(driver, "#timeline-body")
    assert "live live live" in page_text(driver, "#output-items")
    deltas = sum(
        event.type == "response.output_text.delta"
        for event in client.responses.retrieve(response.id, stream=True)
    )
    assert stretches(driver) == [("response.output_text.delta", deltas)] and deltas >= 250


def stretches(driver) -> list[tuple[str, int]]:
    """The timeline's collapsed rows: (event, count)."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#timeline-body tr.stretch'))"
        ".map(r => [r.dataset.event, Number(r.dataset.count)])"
    )
    return [tuple(row) for row in rows]
