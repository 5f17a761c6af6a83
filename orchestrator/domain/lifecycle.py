"""The run lifecycle: every status, every allowed transition, and what each transition stamps.

This is the one place that knows the state machine (contract §4.1). Persistence applies it with a
guarded, versioned UPDATE (`orchestrator.db.transitions`); nothing else compares status strings.
"""

from __future__ import annotations

from enum import StrEnum


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
    def event(self) -> str:
        return f"thread.run.{self.value}"


class StepStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    EXPIRED = "expired"


class StepType(StrEnum):
    MESSAGE_CREATION = "message_creation"
    TOOL_CALLS = "tool_calls"


class MessageStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    INCOMPLETE = "incomplete"
    COMPLETED = "completed"


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.IN_PROGRESS, RunStatus.REQUIRES_ACTION, RunStatus.CANCELLING})
# A worker may hold a lease on a run only in these statuses.
WORKABLE = frozenset({RunStatus.QUEUED, RunStatus.IN_PROGRESS, RunStatus.CANCELLING})
CANCELLABLE = frozenset({RunStatus.QUEUED, RunStatus.IN_PROGRESS, RunStatus.REQUIRES_ACTION})
EXPIRABLE = frozenset({RunStatus.QUEUED, RunStatus.IN_PROGRESS, RunStatus.REQUIRES_ACTION})

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
MESSAGE_INCOMPLETE_REASON: dict[RunStatus, str] = {
    RunStatus.CANCELLED: "run_cancelled",
    RunStatus.FAILED: "run_failed",
    RunStatus.EXPIRED: "run_expired",
    RunStatus.INCOMPLETE: "max_tokens",
}
