"""containers (code_interpreter's for the Responses API) and their files; the container a response uses

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("responses") as batch:
        batch.add_column(sa.Column("container_id", sa.String(64)))
    op.create_table(
        "containers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "tenant_id", sa.String(64), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("last_active_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_minutes", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("memory_limit", sa.String(8)),
        sa.Column("response_id", sa.String(64)),
    )
    op.create_index("ix_containers_page", "containers", ["tenant_id", "created_us", "id"])
    op.create_index("ix_containers_expiry", "containers", ["expires_at"])
    op.create_index("ix_containers_response_id", "containers", ["response_id"])
    op.create_table(
        "container_files",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "container_id",
            sa.String(64),
            sa.ForeignKey("containers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("file_id", sa.String(64), sa.ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column(
            "source",
            sa.Enum(
                "user",
                "assistant",
                name="container_file_source",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("owned", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("container_id", "path", name="uq_container_files_path"),
    )
    op.create_index("ix_container_files_page", "container_files", ["container_id", "created_us", "id"])
    op.create_index("ix_container_files_file_id", "container_files", ["file_id"])


def downgrade() -> None:
    with op.batch_alter_table("responses") as batch:
        batch.drop_column("container_id")
    op.drop_table("container_files")
    op.drop_table("containers")
