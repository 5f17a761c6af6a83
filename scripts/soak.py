"""Soak: mixed runs over three workers while a nemesis SIGKILLs workers and restarts Redis and Postgres,
then a checker walks the database and asserts every durability invariant.

    .venv/bin/python scripts/soak.py [--runs 400] [--clients 12] [--workers 3] [--fault-every 3.0]

Everything is throwaway and on this machine: a Postgres cluster of its own (initdb in a temporary
directory; the machine's shared server is never restarted), a redis-server on a free port, and the real
`orchestrator api`, `worker` (×3) and `scheduler` processes. The runs, through the official SDK with an
Idempotency-Key on every create (so the SDK's own retries across faults create nothing twice):

- text: create a thread and run it, poll to the end;
- tool: a function call; submit its output at requires_action, poll to the end;
- cancel: create, then cancel at once (it ends cancelled, or completed if it won the race);
- expiry: a function call whose output is never submitted; it expires after --expires seconds.

Afterwards every run must be terminal or waiting, one active run per thread, one run per job (no create
doubled by a retry), no doubled assistant message or step, and every run's lifecycle events a gapless path
of allowed transitions. Prints the figures as JSON and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.db.migrate import upgrade  # noqa: E402
from tests.support.invariants import check  # noqa: E402
from tests.support.pgcluster import UNSAFE_AND_FAST, PostgresCluster  # noqa: E402
from tests.support.processes import RedisServer, Stack  # noqa: E402

KINDS = ("text", "tool", "cancel", "expiry")
WEIGHTS = (0.5, 0.25, 0.15, 0.1)
SETTLED = {"completed", "cancelled", "failed", "expired", "incomplete"}
LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


class Nemesis(threading.Thread):
    """Every `every` seconds one fault, in turn: SIGKILL a worker (and start it again), restart Redis
    empty, SIGKILL another worker, restart Postgres (a fast shutdown: every connection is cut)."""

    def __init__(
        self,
        stack: Stack,
        workers: list[str],
        redis_server: RedisServer,
        cluster: PostgresCluster,
        every: float,
    ):
        super().__init__(name="nemesis", daemon=True)
        self.stack, self.workers, self.redis, self.cluster, self.every = (
            stack,
            workers,
            redis_server,
            cluster,
            every,
        )
        self.stopping = threading.Event()
        self.cycled = threading.Event()  # every kind of fault happened at least once
        self.counts: Counter[str] = Counter()

    def run(self) -> None:
        faults = [self.kill_worker, self.restart_postgres, self.kill_worker, self.restart_redis]
        turn = 0
        while not self.stopping.wait(self.every):
            faults[turn % len(faults)]()
            turn += 1
            if turn >= len(faults):
                self.cycled.set()

    def kill_worker(self) -> None:
        name = random.choice(self.workers)
        self.stack.processes[name].kill(signal.SIGKILL)
        self.stack.processes[name].stop()
        self.stack.start_worker(name, 4)
        self.counts["worker SIGKILLs"] += 1

    def restart_redis(self) -> None:
        self.redis.kill()
        time.sleep(0.5)
        self.redis.start()
        self.counts["redis restarts (empty)"] += 1

    def restart_postgres(self) -> None:
        self.cluster.stop("fast")
        time.sleep(1.0)
        self.cluster.start()
        self.counts["postgres restarts"] += 1


class Job:
    def __init__(self, kind: str):
        self.kind, self.key = kind, uuid.uuid4().hex
        self.thread_id = self.run_id = self.final = None
        self.error: str | None = None


def persist(call, *, seconds: float = 300):
    """Call until it succeeds: the SDK already retried (connection errors, 5xx, 429); a fault can outlast
    that, so the job tries again for up to `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except (
            openai.APIConnectionError,
            openai.APITimeoutError,
            openai.InternalServerError,
            openai.RateLimitError,
            openai.ConflictError,  # the same idempotency key still in flight (documented as retryable)
        ):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def poll(client, job: Job, until: set[str], seconds: float = 180) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = persist(lambda: client.beta.threads.runs.retrieve(job.run_id, thread_id=job.thread_id))
        if run.status in until:
            return run.status
        time.sleep(0.1)
    return "timeout"


def play(client, assistant_id: str, tool_assistant_id: str, job: Job) -> None:
    headers = {"Idempotency-Key": job.key}
    tools = job.kind in {"tool", "expiry"}
    words = "please lookup the otters" if tools else f"tell me about otters number {job.key[:6]}"
    run = persist(
        lambda: client.beta.threads.create_and_run(
            assistant_id=tool_assistant_id if tools else assistant_id,
            thread={"messages": [{"role": "user", "content": words}]},
            extra_headers=headers,
        )
    )
    job.thread_id, job.run_id = run.thread_id, run.id
    if job.kind == "cancel":
        with contextlib.suppress(openai.BadRequestError):  # it ended first
            persist(
                lambda: client.beta.threads.runs.cancel(
                    job.run_id, thread_id=job.thread_id, extra_headers={"Idempotency-Key": job.key + "c"}
                )
            )
    if job.kind == "tool":
        status = poll(client, job, SETTLED | {"requires_action"})
        if status == "requires_action":
            run = persist(lambda: client.beta.threads.runs.retrieve(job.run_id, thread_id=job.thread_id))
            outputs = [
                {"tool_call_id": c.id, "output": "OTTERS-42"}
                for c in run.required_action.submit_tool_outputs.tool_calls
            ]
            try:
                persist(
                    lambda: client.beta.threads.runs.submit_tool_outputs(
                        job.run_id,
                        thread_id=job.thread_id,
                        tool_outputs=outputs,
                        extra_headers={"Idempotency-Key": job.key + "s"},
                    )
                )
            except openai.BadRequestError as error:
                job.error = f"submit refused: {error.message}"
    job.final = poll(client, job, SETTLED | ({"requires_action"} if job.kind == "expiry" else set()))


def clients(stack: Stack, key: str, jobs: list[Job], count: int) -> None:
    client = openai.OpenAI(base_url=stack.base + "/v1", api_key=key, max_retries=8, timeout=30)
    assistant = persist(lambda: client.beta.assistants.create(model="local"))
    tool_assistant = persist(lambda: client.beta.assistants.create(model="local", tools=[LOOKUP]))
    pending = list(jobs)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                job = pending.pop()
            try:
                play(client, assistant.id, tool_assistant.id, job)
            except Exception as error:  # recorded per job and reported; the soak goes on
                job.error = f"{type(error).__name__}: {error}"

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def wait_settled(client, jobs: list[Job], seconds: float) -> None:
    """After the faults stop: every run reaches a terminal status (expiry runs included)."""
    deadline = time.monotonic() + seconds
    for job in jobs:
        if job.run_id is None:
            continue
        job.final = poll(client, job, SETTLED, seconds=max(1.0, deadline - time.monotonic()))


def runs_per_thread(database_url: str, jobs: list[Job]) -> list[str]:
    from sqlalchemy import create_engine, func, select

    from orchestrator.db import models

    engine = create_engine(database_url)
    with engine.connect() as connection:
        grouped = select(models.Run.thread_id, func.count()).group_by(models.Run.thread_id)
        counts = {thread_id: count for thread_id, count in connection.execute(grouped)}
        threads = connection.execute(select(func.count()).select_from(models.Thread)).scalar()
    engine.dispose()
    problems = [f"thread {t} has {n} runs" for t, n in counts.items() if n != 1]
    created = sum(1 for job in jobs if job.run_id)
    if threads != created:
        problems.append(f"{threads} threads for {created} jobs")
    return problems


def soak(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="orch-soak-"))
    cluster = PostgresCluster(settings=UNSAFE_AND_FAST)
    redis_server = RedisServer(workdir)
    stack = None
    try:
        cluster.start()
        redis_server.start()
        database_url = cluster.create_database("soak")
        upgrade(database_url)
        stack = Stack(
            database_url,
            redis_server.url,
            workdir,
            ORCHESTRATOR_LEASE_SECONDS="3",
            ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="1",
            ORCHESTRATOR_REQUEUE_AFTER_SECONDS="3",
            ORCHESTRATOR_RUN_EXPIRES_SECONDS=str(args.expires),
            ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="15",
            ORCHESTRATOR_LOG_LEVEL="WARNING",
        )
        stack.start_api()
        names = [f"worker{i}" for i in range(args.workers)]
        for name in names:
            stack.start_worker(name, 4)
        stack.start_scheduler()
        key = stack.create_key("soak")
        rng = random.Random(args.seed)
        jobs = [Job(rng.choices(KINDS, WEIGHTS)[0]) for _ in range(args.runs)]
        nemesis = Nemesis(stack, names, redis_server, cluster, args.fault_every)
        started = time.monotonic()
        nemesis.start()
        clients(stack, key, jobs, args.clients)
        # A small soak can finish its runs before every kind of fault came: let the cycle complete, so the
        # checker always sees the state a Postgres restart and a Redis restart left.
        nemesis.cycled.wait(4 * args.fault_every + 60)
        nemesis.stopping.set()
        nemesis.join()
        loaded = time.monotonic() - started
        client = openai.OpenAI(base_url=stack.base + "/v1", api_key=key, max_retries=8, timeout=30)
        wait_settled(client, jobs, args.expires + 60)
        invariants = check(database_url)
        invariants["one run per job (no create doubled by a retry)"] = runs_per_thread(database_url, jobs)
        invariants["every job's run was created"] = [f"{j.kind}: {j.error}" for j in jobs if j.run_id is None]
        return {
            "runs": len(jobs),
            "by kind": dict(Counter(job.kind for job in jobs)),
            "final statuses": dict(Counter(f"{job.kind}:{job.final}" for job in jobs)),
            "faults": dict(nemesis.counts),
            "seconds under faults": round(loaded, 1),
            "client errors": [f"{job.kind} {job.run_id}: {job.error}" for job in jobs if job.error][:20],
            "invariants": {
                name: {"ok": not found, "violations": found[:10]} for name, found in invariants.items()
            },
        }
    finally:
        if stack is not None:
            stack.stop()
        redis_server.kill()
        cluster.remove()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="openai")
    warnings.filterwarnings("ignore", message=".*Assistants API is deprecated.*")
    warnings.filterwarnings("ignore", message="deprecated")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=400, help="how many runs in all (the size knob)")
    parser.add_argument("--clients", type=int, default=12, help="concurrent SDK clients")
    parser.add_argument("--workers", type=int, default=3, help="orchestrator worker processes")
    parser.add_argument("--fault-every", type=float, default=3.0, help="seconds between two faults")
    parser.add_argument("--expires", type=int, default=20, help="ORCHESTRATOR_RUN_EXPIRES_SECONDS")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--keep", action="store_true", help="keep the processes' logs")
    args = parser.parse_args(argv)
    report = soak(args)
    print(json.dumps(report, indent=2))
    held = all(result["ok"] for result in report["invariants"].values())
    print("every invariant held" if held else "INVARIANT VIOLATED", file=sys.stderr)
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
