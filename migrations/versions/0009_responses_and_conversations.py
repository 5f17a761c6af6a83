"""the Responses and Conversations APIs: a response is a run (runs.api), with its own echo and items

Revision ID: 0009
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
APIS = ("assistants", "responses")


def upgrade() -> None:
    # Batch mode: on SQLite (orchestrator dev) a constraint or a nullability change rebuilds the table.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column(
                "api",
                sa.Enum(*APIS, name="run_api", native_enum=False, create_constraint=True, length=16),
                nullable=False,
                server_default="assistants",
            )
        )
        batch.alter_column("thread_id", existing_type=sa.String(64), nullable=True)
        batch.alter_column("assistant_id", existing_type=sa.String(64), nullable=True)
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "tenant_id", sa.String(64), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("next_position", sa.Integer(), nullable=False),
    )
    op.create_index("ix_conversations_tenant", "conversations", ["tenant_id", "created_at"])
    op.create_table(
        "conversation_items",
        sa.Column(
            "conversation_id",
            sa.String(64),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("conversation_id", "item_id", name="uq_conversation_items_item"),
    )
    op.create_table(
        "responses",
        sa.Column("id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "tenant_id", sa.String(64), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("previous_response_id", sa.String(64)),
        sa.Column("conversation_id", sa.String(64), sa.ForeignKey("conversations.id", ondelete="SET NULL")),
        sa.Column("store", sa.Boolean(), nullable=False),
        sa.Column("background", sa.Boolean(), nullable=False),
        sa.Column("echo", JSON, nullable=False),
        sa.Column("ended_at", sa.BigInteger()),
    )
    op.create_index("ix_responses_tenant_id", "responses", ["tenant_id"])
    op.create_index("ix_responses_conversation_id", "responses", ["conversation_id"])
    op.create_index("ix_responses_ended", "responses", ["store", "ended_at"])
    op.create_table(
        "response_items",
        sa.Column(
            "response_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "side",
            sa.Enum(
                "input", "output", name="item_side", native_enum=False, create_constraint=True, length=16
            ),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("data", JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("response_items")
    op.drop_table("responses")
    op.drop_table("conversation_items")
    op.drop_table("conversations")
    op.execute("DELETE FROM runs WHERE api = 'responses'")
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("assistant_id", existing_type=sa.String(64), nullable=False)
        batch.alter_column("thread_id", existing_type=sa.String(64), nullable=False)
        batch.drop_column("api")
