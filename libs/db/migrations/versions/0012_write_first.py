"""a conversation Kommo opened by "write first": Kommo's chat id and its id of the client, which the
conversation's first message to Kommo names (`conversation_ref_id`, `sender.ref_id`) so it lands in that chat

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("kommo_chat_ref", sa.String(64), server_default="", nullable=False))
    op.add_column("conversations", sa.Column("kommo_client_ref", sa.String(64), server_default="", nullable=False))


def downgrade() -> None:
    op.drop_column("conversations", "kommo_client_ref")
    op.drop_column("conversations", "kommo_chat_ref")
