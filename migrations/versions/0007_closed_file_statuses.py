"""The status columns of files, chunk sets and store files hold their closed sets, checked by the database.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The closed sets as they were at this revision (later changes to the enums get revisions of their own).
CHECKS = {
    "files": ("file_status", ("uploaded", "processed", "error")),
    "chunk_sets": ("chunk_set_status", ("in_progress", "completed", "failed")),
    "vector_store_files": ("store_file_status", ("in_progress", "completed", "cancelled", "failed")),
}


def _condition(values: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    # Batch mode: on SQLite (orchestrator dev) a constraint is added by rebuilding the table.
    for table, (name, values) in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            batch.create_check_constraint(name, _condition(values))


def downgrade() -> None:
    for table, (name, _values) in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
