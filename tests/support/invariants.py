"""The durability promises, checked by walking a database after the fact (the soak's checker).

Each check returns a list of violations (strings); an empty list means the invariant holds for every row.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from sqlalchemy import create_engine, select

from orchestrator.db import models
from orchestrator.domain.lifecycle import ACTIVE, TRANSITIONS, RunStatus

SETTLED = {s.value for s in RunStatus if s.is_terminal} | {RunStatus.REQUIRES_ACTION.value}
ACTIVE_VALUES = {s.value for s in ACTIVE}


def check(database_url: str) -> dict[str, list[str]]:
    """Every invariant by name, with its violations."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            runs = list(connection.execute(select(models.Run.id, models.Run.thread_id, models.Run.status)))
            events = defaultdict(list)
            for run_id, seq, event, data in connection.execute(
                select(
                    models.RunEvent.run_id, models.RunEvent.seq, models.RunEvent.event, models.RunEvent.data
                ).order_by(models.RunEvent.run_id, models.RunEvent.seq)
            ):
                events[run_id].append((seq, event, data))
            messages = list(
                connection.execute(
                    select(models.Message.run_id, models.Message.turn, models.Message.role).where(
                        models.Message.run_id.is_not(None)
                    )
                )
            )
            steps = list(connection.execute(select(models.RunStep.run_id, models.RunStep.turn)))
    finally:
        engine.dispose()
    return {
        "every run terminal or waiting": settled(runs),
        "one active run per thread": one_active_per_thread(runs),
        "no doubled assistant message": doubled([(r, t) for r, t, role in messages if role == "assistant"]),
        "no doubled step": doubled(steps),
        "gapless lifecycle sequences": [v for run in runs for v in lifecycle(run, events.get(run.id, []))],
    }


def settled(runs) -> list[str]:
    return [f"{run.id} is {run.status}" for run in runs if run.status not in SETTLED]


def one_active_per_thread(runs) -> list[str]:
    active = Counter(run.thread_id for run in runs if run.status in ACTIVE_VALUES)
    return [f"{thread} has {count} active runs" for thread, count in active.items() if count > 1]


def doubled(pairs) -> list[str]:
    return [
        f"run {run_id} turn {turn} x{count}" for (run_id, turn), count in Counter(pairs).items() if count > 1
    ]


def lifecycle(run, events: list[tuple[int, str, dict]]) -> list[str]:
    """The run's status events form a path of allowed transitions from `queued` to its stored status,
    with strictly increasing sequence numbers; each step and message is created once and ended at most
    once, after it was created."""
    problems = []
    seqs = [seq for seq, _, _ in events]
    if seqs != sorted(set(seqs)):
        problems.append(f"{run.id}: sequence numbers not strictly increasing")
    names = [
        name for _, name, _ in events if name.startswith("thread.run.") and _status(name) or name == CREATED
    ]
    if names[:2] != [CREATED, "thread.run.queued"] or names.count(CREATED) != 1:
        problems.append(f"{run.id}: does not start created, queued: {names[:3]}")
    statuses = [_status(name) for _, name, _ in events if _status(name)]
    for source, target in zip(statuses, statuses[1:], strict=False):
        if target not in TRANSITIONS.get(source, frozenset()):
            problems.append(f"{run.id}: {source} → {target} is not an allowed transition")
    if statuses and statuses[-1] != run.status:
        problems.append(f"{run.id}: last status event {statuses[-1]} but the run is {run.status}")
    problems += _objects_once(run.id, events)
    return problems


CREATED = "thread.run.created"


def _status(name: str) -> RunStatus | None:
    """The status a run event reports (thread.run.created is followed by its own thread.run.queued)."""
    suffix = name.removeprefix("thread.run.")
    return RunStatus(suffix) if suffix != name and suffix in RunStatus._value2member_map_ else None


def _objects_once(run_id: str, events) -> list[str]:
    created, ended, problems = Counter(), Counter(), []
    story: dict[tuple, list[str]] = defaultdict(list)
    for seq, name, data in events:
        kind, _, phase = name.rpartition(".")
        if kind not in {"thread.run.step", "thread.message"}:
            continue
        key = (kind, data.get("id"))
        story[key].append(f"{seq}:{phase}")
        if phase == "created":
            created[key] += 1
        elif phase in {"completed", "incomplete", "cancelled", "failed", "expired"}:
            if not created[key]:
                problems.append(f"{run_id}: {name} {key[1]} before it was created")
            ended[key] += 1
    problems += [f"{run_id}: {k[0]} {k[1]} created {n} times {story[k]}" for k, n in created.items() if n > 1]
    problems += [f"{run_id}: {k[0]} {k[1]} ended {n} times {story[k]}" for k, n in ended.items() if n > 1]
    return problems
