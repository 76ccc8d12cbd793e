"""index the spool by ordering key (every Kommo hook asks whether its conversation is spooled)

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_gateway_spool_ordering_key", "gateway_spool", ["ordering_key"])


def downgrade() -> None:
    op.drop_index("ix_gateway_spool_ordering_key", table_name="gateway_spool")
