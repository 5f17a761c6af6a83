"""Observability pieces without services: the metrics token, the exposition, the multiprocess directory,
JSON log lines, and how the inspector page is served."""

from __future__ import annotations

import json
import logging
import os

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from orchestrator.adapters.ports import InMemoryBus, InMemoryQueue
from orchestrator.api.app import create_app
from orchestrator.context import Context
from orchestrator.db.connection import make_sessionmaker
from orchestrator.observability import logs, metrics
from orchestrator.settings import Settings


def app_with(**settings):
    # No tables behind this engine: the scrape-time state metrics report the database as unreadable.
    chosen = Settings(database_url="sqlite://", **settings)
    context = Context(chosen, make_sessionmaker(create_engine("sqlite://")), InMemoryQueue(), InMemoryBus())
    return create_app(chosen, context).test_client()


def test_metrics_are_open_without_a_token_and_in_the_prometheus_text_format():
    response = app_with().get("/metrics")
    assert response.status_code == 200
    names = {family.name for family in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {"orchestrator_http_request_duration_seconds", "orchestrator_state_up"} <= names


def test_metrics_answer_only_the_bearer_token_when_one_is_set():
    client = app_with(metrics_token="s3cret")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_the_inspector_page_needs_no_key_but_its_data_does_and_it_allows_no_foreign_code():
    client = app_with()
    page = client.get("/ui")
    assert page.status_code == 200 and b"/ui/static/inspector.js" in page.data
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/ui/static/inspector.js").status_code == 200
    assert client.get("/ui/api/threads").status_code == 401


def test_each_start_gets_a_fresh_metrics_directory_and_dead_groups_leave_none_behind(tmp_path, monkeypatch):
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")
    dead = tmp_path / "orchestrator-metrics-api-4194302"
    dead.mkdir()
    alive = tmp_path / f"orchestrator-metrics-api-{os.getppid()}"
    alive.mkdir()
    path = metrics.use_multiprocess_dir(Settings(metrics_dir=str(tmp_path)), "api")
    assert path == tmp_path / f"orchestrator-metrics-api-{os.getpid()}"
    assert path.is_dir() and not any(path.iterdir())
    assert os.environ[metrics.MULTIPROC_ENV] == str(path)
    assert not dead.exists() and alive.exists()


@pytest.fixture
def restored_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for chatty in logs.QUIET_BELOW_DEBUG:
        logging.getLogger(chatty).setLevel(logging.NOTSET)
    structlog.reset_defaults()
    logs.clear()


def test_json_log_lines_carry_the_ids_bound_in_the_context(restored_logging, capsys):
    logs.configure(Settings(log_format="json"), role="worker")
    with logs.bound(tenant_id="tenant_1", run_id="run_1"):
        logging.getLogger("orchestrator.engine.advance").warning("run %s stalled", "run_1")
        logs.get("orchestrator.test").info("turn ended", outcome="ok")
    logging.getLogger("celery.worker").info("outside")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["event"] == "run run_1 stalled" and lines[0]["level"] == "warning"
    assert (lines[0]["tenant_id"], lines[0]["run_id"], lines[0]["role"]) == ("tenant_1", "run_1", "worker")
    assert lines[1]["outcome"] == "ok" and lines[1]["run_id"] == "run_1"
    assert "run_id" not in lines[2]


@pytest.mark.parametrize("level", ["info", "debug"])
def test_http_clients_log_each_request_only_at_debug(restored_logging, capsys, level):
    logs.configure(Settings(log_format="json", log_level=level), role="worker")
    logging.getLogger("httpx2").info('HTTP Request: POST http://model/v1/chat/completions "HTTP/1.1 200 OK"')
    logging.getLogger("httpx2").warning("a retry")
    events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    assert events[-1] == "a retry"
    assert any(event.startswith("HTTP Request") for event in events) == (level == "debug")
