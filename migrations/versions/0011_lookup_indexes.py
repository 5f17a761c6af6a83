"""Indexes for lookups that scanned whole tables: an `item_reference` names an item by id alone (a
response's or a conversation's), and the inspector pages a tenant's responses newest first.

`ix_runs_tenant_id` gives way to (tenant_id, api, created_us), which serves every lookup it served.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_response_items_item", "response_items", ["tenant_id", "item_id"])
    op.create_index("ix_conversation_items_item", "conversation_items", ["tenant_id", "item_id"])
    op.create_index("ix_runs_tenant_api_created", "runs", ["tenant_id", "api", "created_us"])
    op.drop_index("ix_runs_tenant_id", table_name="runs")


def downgrade() -> None:
    op.create_index("ix_runs_tenant_id", "runs", ["tenant_id"])
    op.drop_index("ix_runs_tenant_api_created", table_name="runs")
    op.drop_index("ix_conversation_items_item", table_name="conversation_items")
    op.drop_index("ix_response_items_item", table_name="response_items")
