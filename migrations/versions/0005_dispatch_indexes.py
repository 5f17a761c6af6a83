"""Indexes the fair dispatcher counts and takes runs by, per tenant.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

HANDED_OUT = "status IN ('in_progress', 'cancelling') OR (status = 'queued' AND enqueued_at IS NOT NULL)"
WAITING = "status = 'queued' AND enqueued_at IS NULL"
WORKING = "status IN ('in_progress', 'cancelling')"


def _partial(name: str, columns: list[str], where: str) -> None:
    op.create_index(
        name, "runs", columns, unique=False, postgresql_where=sa.text(where), sqlite_where=sa.text(where)
    )


def upgrade() -> None:
    _partial("ix_runs_handed_out", ["tenant_id"], HANDED_OUT)
    _partial("ix_runs_waiting", ["tenant_id", "created_us"], WAITING)
    _partial("ix_runs_working", ["tenant_id"], WORKING)


def downgrade() -> None:
    for name in ("ix_runs_working", "ix_runs_waiting", "ix_runs_handed_out"):
        op.drop_index(name, table_name="runs")
