"""The run lifecycle: every status, every allowed transition, and what each transition stamps.

This is the one place that knows the state machine (contract §4.1): every status set below is derived
from the table of transitions. Persistence applies it with a guarded, versioned UPDATE (the run store,
`orchestrator.db.runs`), and the status columns hold these enums, checked by the database.
"""

from __future__ import annotations

from enum import StrEnum


class Api(StrEnum):
    """The API face a run was created through: it decides the run's objects and event names; the engine
    leases, fences, numbers and recovers every run the same way (docs/engine.md)."""

    ASSISTANTS = "assistants"  # a thread's run: steps, messages, thread.run.* events
    RESPONSES = "responses"  # a Response: output items, response.* events


class RunStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    REQUIRES_ACTION = "requires_action"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    EXPIRED = "expired"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE

    @property
    def is_terminal(self) -> bool:
        return self not in ACTIVE

    @property
    def event(self) -> RunEvent:
        return RunEvent(f"thread.run.{self.value}")


class StepStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    EXPIRED = "expired"


class StepType(StrEnum):
    MESSAGE_CREATION = "message_creation"
    TOOL_CALLS = "tool_calls"


class StepEvent:
    """The event names of a step and a message in each of their statuses."""

    @staticmethod
    def of_step(status: StepStatus) -> RunEvent:
        return RunEvent(f"thread.run.step.{status.value}")

    @staticmethod
    def of_message(status: MessageStatus) -> RunEvent:
        return RunEvent(f"thread.message.{status.value}")


class MessageStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    INCOMPLETE = "incomplete"
    COMPLETED = "completed"


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class RunEvent(StrEnum):
    """Every event a run's stream carries (contract §4), lifecycle and deltas."""

    THREAD_CREATED = "thread.created"
    RUN_CREATED = "thread.run.created"
    RUN_QUEUED = "thread.run.queued"
    RUN_IN_PROGRESS = "thread.run.in_progress"
    RUN_REQUIRES_ACTION = "thread.run.requires_action"
    RUN_CANCELLING = "thread.run.cancelling"
    RUN_CANCELLED = "thread.run.cancelled"
    RUN_FAILED = "thread.run.failed"
    RUN_COMPLETED = "thread.run.completed"
    RUN_INCOMPLETE = "thread.run.incomplete"
    RUN_EXPIRED = "thread.run.expired"
    STEP_CREATED = "thread.run.step.created"
    STEP_IN_PROGRESS = "thread.run.step.in_progress"
    STEP_DELTA = "thread.run.step.delta"
    STEP_COMPLETED = "thread.run.step.completed"
    STEP_FAILED = "thread.run.step.failed"
    STEP_CANCELLED = "thread.run.step.cancelled"
    STEP_EXPIRED = "thread.run.step.expired"
    MESSAGE_CREATED = "thread.message.created"
    MESSAGE_IN_PROGRESS = "thread.message.in_progress"
    MESSAGE_DELTA = "thread.message.delta"
    MESSAGE_COMPLETED = "thread.message.completed"
    MESSAGE_INCOMPLETE = "thread.message.incomplete"

    @property
    def is_delta(self) -> bool:
        return self.value.endswith(".delta")


TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset(
        {RunStatus.IN_PROGRESS, RunStatus.CANCELLING, RunStatus.FAILED, RunStatus.EXPIRED}
    ),
    RunStatus.IN_PROGRESS: frozenset(
        {
            RunStatus.REQUIRES_ACTION,
            RunStatus.COMPLETED,
            RunStatus.INCOMPLETE,
            RunStatus.FAILED,
            RunStatus.CANCELLING,
            RunStatus.EXPIRED,
        }
    ),
    RunStatus.REQUIRES_ACTION: frozenset(
        {RunStatus.QUEUED, RunStatus.CANCELLING, RunStatus.EXPIRED, RunStatus.FAILED}
    ),
    RunStatus.CANCELLING: frozenset({RunStatus.CANCELLED}),
}


# Active: the run can still move. Waiting: it waits for the client (tool outputs), holding no worker.
ACTIVE = frozenset(TRANSITIONS)
WAITING = frozenset({RunStatus.REQUIRES_ACTION})
# A worker may hold a lease on a run only in these statuses.
WORKABLE = ACTIVE - WAITING


def sources_of(target: RunStatus) -> frozenset[RunStatus]:
    """Every status from which `target` may be entered: the guard of a transition."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def can_transition(source: RunStatus, target: RunStatus) -> bool:
    return target in TRANSITIONS.get(source, frozenset())


def stamps(target: RunStatus, now: int) -> dict[str, object]:
    """The run fields a transition into `target` sets (contract §4.1)."""
    match target:
        case RunStatus.QUEUED:
            return {"required_action": None}
        case RunStatus.IN_PROGRESS:
            return {"started_at": now}
        case RunStatus.COMPLETED:
            return {"completed_at": now, "expires_at": None, "required_action": None}
        case RunStatus.INCOMPLETE:
            return {"completed_at": now, "expires_at": None, "required_action": None}
        case RunStatus.FAILED:
            return {"failed_at": now, "required_action": None}
        case RunStatus.CANCELLED:
            return {"cancelled_at": now, "required_action": None}
        case RunStatus.EXPIRED:
            return {"required_action": None}
        case _:
            return {}


# How a run's end carries over to the step and the message it was working on.
STEP_END: dict[RunStatus, StepStatus] = {
    RunStatus.CANCELLED: StepStatus.CANCELLED,
    RunStatus.FAILED: StepStatus.FAILED,
    RunStatus.EXPIRED: StepStatus.EXPIRED,
    RunStatus.COMPLETED: StepStatus.COMPLETED,
    RunStatus.INCOMPLETE: StepStatus.COMPLETED,
}
STEP_STAMP: dict[StepStatus, str] = {
    StepStatus.CANCELLED: "cancelled_at",
    StepStatus.FAILED: "failed_at",
    StepStatus.EXPIRED: "expired_at",
    StepStatus.COMPLETED: "completed_at",
}
CANCELLABLE = sources_of(RunStatus.CANCELLING)
EXPIRABLE = sources_of(RunStatus.EXPIRED)


def in_sql(statuses: frozenset[RunStatus], column: str = "status") -> str:
    """`status IN (…)` for a set of statuses, for the partial indexes the database keeps on them."""
    return f"{column} IN ({', '.join(repr(s.value) for s in sorted(statuses, key=list(RunStatus).index))})"


MESSAGE_INCOMPLETE_REASON: dict[RunStatus, str] = {
    RunStatus.CANCELLED: "run_cancelled",
    RunStatus.FAILED: "run_failed",
    RunStatus.EXPIRED: "run_expired",
    RunStatus.INCOMPLETE: "max_tokens",
}
