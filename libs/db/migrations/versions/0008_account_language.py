"""delivery statuses a manager understands: the account's language, failure reasons, the status history

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("installations", sa.Column("language", sa.String(8), server_default="en", nullable=False))
    op.add_column(
        "installations", sa.Column("language_set_by", sa.String(16), server_default="default", nullable=False)
    )
    op.add_column("messenger_deliveries", sa.Column("reason", sa.String(64), server_default="", nullable=False))
    op.add_column(
        "messenger_deliveries",
        sa.Column("reason_args", postgresql.JSONB(), server_default="{}", nullable=False),
    )
    op.create_table(
        "delivery_events",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("kommo_msgid", sa.String(64), nullable=False),
        sa.Column("scope_id", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error_code", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("reason", sa.String(64), server_default="", nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("posted", sa.Boolean(), nullable=False),
        comment="owner: kommo_sender",
    )
    op.create_index("ix_delivery_events_kommo_msgid", "delivery_events", ["kommo_msgid", "id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_events_kommo_msgid", table_name="delivery_events")
    op.drop_table("delivery_events")
    op.drop_column("messenger_deliveries", "reason_args")
    op.drop_column("messenger_deliveries", "reason")
    op.drop_column("installations", "language_set_by")
    op.drop_column("installations", "language")
