"""the message map: lookups by platform and Kommo id, manager content digests and reactions; typed spool

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("content_digest", sa.String(64), server_default="", nullable=False))
    op.add_column("messages", sa.Column("manager_reaction", sa.String(32), server_default="", nullable=False))
    op.create_index("ix_messages_platform_message", "messages", ["conversation_id", "platform_message_id"])
    op.create_index("ix_messages_kommo_message", "messages", ["kommo_message_id"])
    op.add_column("gateway_spool", sa.Column("message_type", sa.String(200), server_default="", nullable=False))


def downgrade() -> None:
    op.drop_column("gateway_spool", "message_type")
    op.drop_index("ix_messages_kommo_message", table_name="messages")
    op.drop_index("ix_messages_platform_message", table_name="messages")
    op.drop_column("messages", "manager_reaction")
    op.drop_column("messages", "content_digest")
