"""pausing a channel: when it was paused, and its client events held meanwhile

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("connections", sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "held_inbound",
        sa.Column("id", sa.BigInteger(), autoincrement=True, primary_key=True),
        sa.Column("connection_id", sa.String(64), nullable=False),
        sa.Column("ordering_key", sa.String(300), nullable=False),
        sa.Column("msg_id", sa.String(300), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("message_type", sa.String(200), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        comment="owner: router",
    )
    op.create_index("ix_held_inbound_connection", "held_inbound", ["connection_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_held_inbound_connection", table_name="held_inbound")
    op.drop_table("held_inbound")
    op.drop_column("connections", "paused_at")
