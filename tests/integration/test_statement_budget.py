"""What one run costs Postgres, counted: the figures docs/performance.md and docs/engine.md give. A change that adds
a round trip to a run's hot path fails here, where a benchmark would only drift."""

from __future__ import annotations

from sqlalchemy import event

from orchestrator.engine import advance
from orchestrator.providers.local import LocalModel
from orchestrator.schemas.assistants import CreateAssistant
from orchestrator.schemas.runs import CreateThreadAndRun
from orchestrator.services import assistants, runs

# Reads on a timer, not per run: the tenant limits cache and the lease keeper's status poll.
PERIODIC = ("FROM tenant_limits", "SELECT runs.id, runs.status")


class Counter:
    def __init__(self, engine):
        self.statements: list[str] = []
        self.commits = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)
        self._engine = engine

    def _statement(self, _conn, _cursor, statement, *_args) -> None:
        if not any(marker in statement for marker in PERIODIC):
            self.statements.append(statement)

    def _commit(self, _conn) -> None:
        self.commits += 1

    def take(self) -> tuple[int, int]:
        counted = (len(self.statements), self.commits)
        self.statements, self.commits = [], 0
        return counted

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._statement)
        event.remove(self._engine, "commit", self._commit)


def test_a_streamed_runs_create_is_two_statements_and_its_worker_side_ten_in_three_transactions(
    ctx, tenant, engine
):
    assistant = assistants.create(ctx, tenant, CreateAssistant(model="local"))
    body = CreateThreadAndRun.model_validate(
        {"assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": "hello"}]}}
    )
    model = LocalModel(delay_ms=0)
    advance.advance(ctx, runs.create_thread_and_run(ctx, tenant, body).run["id"], model)  # caches warm
    counter = Counter(engine)
    try:
        run_id = runs.create_thread_and_run(ctx, tenant, body).run["id"]
        assert counter.take() == (2, 1)  # read the assistant; insert thread, message, run and its events
        advance.advance(ctx, run_id, model)
        # claim + prompt + events; step and message + fence + events; message, step, move + events
        assert counter.take() == (10, 3)
    finally:
        counter.close()


def test_a_streamed_responses_create_is_two_statements_and_its_worker_side_twelve_in_three_transactions(
    ctx, tenant, engine
):
    from orchestrator.schemas.responses import CreateResponse
    from orchestrator.services import responses

    body = CreateResponse.model_validate({"model": "local", "input": "hello"})
    model = LocalModel(delay_ms=0)
    advance.advance(ctx, responses.create(ctx, tenant, body).run["id"], model)  # caches warm
    counter = Counter(engine)
    try:
        response_id = responses.create(ctx, tenant, body).run["id"]
        assert counter.take() == (2, 1)  # insert the run with its events; the echo and input items
        advance.advance(ctx, response_id, model)
        # claim + echo + items + events; the message item + fence + its opening and text events; the
        # message done + the move + the end stamped + the output read back + events
        assert counter.take() == (12, 3)
    finally:
        counter.close()
