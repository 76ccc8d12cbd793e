"""the client's last message per conversation: when the platform says it was sent, and its id (WhatsApp's
24-hour customer-service window, and its typing indicator, which shows on that message)

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("client_message_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("conversations", sa.Column("client_message_id", sa.String(200), server_default="", nullable=False))


def downgrade() -> None:
    op.drop_column("conversations", "client_message_id")
    op.drop_column("conversations", "client_message_at")
