"""Tables. Every row carries its tenant; ordering uses `created_us` (unique per process) then `id`.

Timestamps are unix seconds (ints, as the API shows them); leases are float seconds. Types are kept
portable so the embedded mode can run the same models on SQLite.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from orchestrator.domain.lifecycle import (
    ACTIVE,
    Api,
    MessageStatus,
    Role,
    RunStatus,
    StepStatus,
    StepType,
    in_sql,
)

Json = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ACTIVE_SQL = in_sql(ACTIVE)
# Runs handed to workers (in the broker or being advanced), and runs waiting in Postgres to be handed out:
# what the dispatcher counts and takes per tenant (services/dispatch.py).
HANDED_OUT_SQL = "status IN ('in_progress', 'cancelling') OR (status = 'queued' AND enqueued_at IS NOT NULL)"
WAITING_SQL = "status = 'queued' AND enqueued_at IS NULL"
WORKING_SQL = "status IN ('in_progress', 'cancelling')"


def closed_set(enum: type, name: str, length: int = 16, **options):
    """A column holding one of a StrEnum's values, which the database checks (a CHECK constraint named
    `ck_<table>_<name>`); reads give the enum member."""
    return mapped_column(
        Enum(
            enum,
            name=name,
            native_enum=False,
            create_constraint=True,
            length=length,
            validate_strings=True,
            values_callable=lambda members: [member.value for member in members],
        ),
        **options,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: Json, list[Any]: Json}


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)


class Assistant(Base):
    __tablename__ = "assistants"
    __table_args__ = (Index("ix_assistants_page", "tenant_id", "created_us", "id"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str] = mapped_column(Text)
    instructions: Mapped[str | None] = mapped_column(Text)
    tools: Mapped[list[Any]]
    tool_resources: Mapped[dict[str, Any] | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")
    temperature: Mapped[float | None] = mapped_column(Double)
    top_p: Mapped[float | None] = mapped_column(Double)
    response_format: Mapped[Any | None] = mapped_column(Json)
    reasoning_effort: Mapped[str | None] = mapped_column(String(16))


class Thread(Base):
    __tablename__ = "threads"
    __table_args__ = (Index("ix_threads_tenant", "tenant_id", "created_us"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")
    tool_resources: Mapped[dict[str, Any] | None]


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_page", "thread_id", "created_us", "id"),
        Index("ix_messages_run_page", "run_id", "created_us", "id"),
        # One assistant message per model turn of a run: a redelivered task cannot add a second.
        Index(
            "uq_messages_run_turn",
            "run_id",
            "turn",
            unique=True,
            postgresql_where=text("turn IS NOT NULL"),
            sqlite_where=text("turn IS NOT NULL"),
        ),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    role: Mapped[Role] = closed_set(Role, "message_role")
    status: Mapped[MessageStatus] = closed_set(MessageStatus, "message_status")
    content: Mapped[list[Any]]
    assistant_id: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(64))
    turn: Mapped[int | None] = mapped_column(Integer)
    attachments: Mapped[list[Any]]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")
    incomplete_details: Mapped[dict[str, Any] | None]
    completed_at: Mapped[int | None] = mapped_column(BigInteger)
    incomplete_at: Mapped[int | None] = mapped_column(BigInteger)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_page", "thread_id", "created_us", "id"),
        # A tenant's runs or responses newest first (the inspector); also every lookup by tenant alone.
        Index("ix_runs_tenant_api_created", "tenant_id", "api", "created_us"),
        # Promise 3: at most one active run per thread, enforced here and nowhere else.
        Index(
            "uq_runs_one_active_per_thread",
            "thread_id",
            unique=True,
            postgresql_where=text(ACTIVE_SQL),
            sqlite_where=text(ACTIVE_SQL),
        ),
        Index(
            "ix_runs_sweep",
            "status",
            "lease_expires_at",
            postgresql_where=text(ACTIVE_SQL),
            sqlite_where=text(ACTIVE_SQL),
        ),
        Index(
            "ix_runs_handed_out",
            "tenant_id",
            postgresql_where=text(HANDED_OUT_SQL),
            sqlite_where=text(HANDED_OUT_SQL),
        ),
        Index(
            "ix_runs_waiting",
            "tenant_id",
            "created_us",
            postgresql_where=text(WAITING_SQL),
            sqlite_where=text(WAITING_SQL),
        ),
        Index(
            "ix_runs_working",
            "tenant_id",
            postgresql_where=text(WORKING_SQL),
            sqlite_where=text(WORKING_SQL),
        ),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # The face that made the run; a Response has no thread and no assistant (db/response_models.py).
    api: Mapped[Api] = closed_set(Api, "run_api", default=Api.ASSISTANTS, server_default=Api.ASSISTANTS.value)
    thread_id: Mapped[str | None] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    assistant_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[RunStatus] = closed_set(RunStatus, "run_status")
    # Bumped by every update: the fencing token of guarded writes.
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Sequence numbers handed out so far (lifecycle events and reserved delta blocks), and the last
    # lifecycle event's: live events carry it as `prev` so a watcher can tell it missed one.
    event_seq: Mapped[int] = mapped_column(Integer, default=0)
    lifecycle_seq: Mapped[int] = mapped_column(Integer, default=0)
    # lifecycle_seq as it was before the last statement that numbered events: set in that same UPDATE (SET
    # sees the old values), so RETURNING tells the first new event which one it follows.
    lifecycle_prev: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Model turns started so far; steps and assistant messages are unique per (run, turn).
    turn: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[float | None] = mapped_column(Double)
    enqueued_at: Mapped[float | None] = mapped_column(Double)
    takeovers: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[str] = mapped_column(Text)
    instructions: Mapped[str] = mapped_column(Text)
    additional_instructions: Mapped[str | None] = mapped_column(Text)
    tools: Mapped[list[Any]]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")
    temperature: Mapped[float | None] = mapped_column(Double)
    top_p: Mapped[float | None] = mapped_column(Double)
    max_prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    max_completion_tokens: Mapped[int | None] = mapped_column(Integer)
    truncation_strategy: Mapped[dict[str, Any]]
    tool_choice: Mapped[Any] = mapped_column(Json)
    parallel_tool_calls: Mapped[bool] = mapped_column(Boolean)
    response_format: Mapped[Any | None] = mapped_column(Json)
    reasoning_effort: Mapped[str | None] = mapped_column(String(16))
    # Whether the run's stream shows file_search result content (create's `include[]`).
    search_content: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    required_action: Mapped[dict[str, Any] | None]
    last_error: Mapped[dict[str, Any] | None]
    incomplete_details: Mapped[dict[str, Any] | None]
    usage: Mapped[dict[str, Any] | None]
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger)
    failed_at: Mapped[int | None] = mapped_column(BigInteger)
    completed_at: Mapped[int | None] = mapped_column(BigInteger)


class RunStep(Base):
    __tablename__ = "run_steps"
    __table_args__ = (
        Index("ix_run_steps_page", "run_id", "created_us", "id"),
        Index("uq_run_steps_run_turn", "run_id", "turn", unique=True),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    thread_id: Mapped[str] = mapped_column(String(64))
    assistant_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    turn: Mapped[int] = mapped_column(Integer)
    type: Mapped[StepType] = closed_set(StepType, "step_type", 32)
    status: Mapped[StepStatus] = closed_set(StepStatus, "step_status")
    step_details: Mapped[dict[str, Any]]
    last_error: Mapped[dict[str, Any] | None]
    usage: Mapped[dict[str, Any] | None]
    # Usage of the model turn that asked for tool calls; shown once the step completes (contract §4.1).
    pending_usage: Mapped[dict[str, Any] | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")
    expired_at: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger)
    failed_at: Mapped[int | None] = mapped_column(BigInteger)
    completed_at: Mapped[int | None] = mapped_column(BigInteger)


class RunEvent(Base):
    """The durable lifecycle log of a run: what a resuming stream replays (deltas live in Redis)."""

    __tablename__ = "run_events"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[float] = mapped_column(Double)


class TenantLimits(Base):
    """A tenant's limits, set with `orchestrator tenants set`; a tenant without a row has none. 0 = no limit."""

    __tablename__ = "tenant_limits"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    requests_per_second: Mapped[float] = mapped_column(Double, default=0.0)
    max_active_runs: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class IdempotencyKey(Base):
    """The first response to a POST sent with an `Idempotency-Key`, replayed to its retries for 24 h."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 of the method, path and body: the same key with another request is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any] | None]
    created_at: Mapped[float] = mapped_column(Double)
