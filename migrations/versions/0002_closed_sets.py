"""Status, type and role columns hold their closed sets, checked by the database; runs.lifecycle_prev.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The closed sets as they were at this revision (later changes to the enums get revisions of their own).
RUN_STATUSES = ("queued", "in_progress", "requires_action", "cancelling")
RUN_STATUSES += ("cancelled", "failed", "completed", "incomplete", "expired")
STEP_STATUSES = ("in_progress", "cancelled", "failed", "completed", "expired")
CHECKS = {
    "runs": [("run_status", "status", RUN_STATUSES)],
    "run_steps": [
        ("step_status", "status", STEP_STATUSES),
        ("step_type", "type", ("message_creation", "tool_calls")),
    ],
    "messages": [
        ("message_status", "status", ("in_progress", "incomplete", "completed")),
        ("message_role", "role", ("user", "assistant")),
    ],
}


def _condition(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    # Batch mode: on SQLite (orchestrator dev) a constraint is added by rebuilding the table.
    for table, checks in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            for name, column, enum in checks:
                batch.create_check_constraint(name, _condition(column, enum))
            if table == "runs":
                batch.add_column(
                    sa.Column("lifecycle_prev", sa.Integer(), server_default="0", nullable=False)
                )


def downgrade() -> None:
    for table, checks in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            for name, _column, _enum in checks:
                batch.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
            if table == "runs":
                batch.drop_column("lifecycle_prev")
