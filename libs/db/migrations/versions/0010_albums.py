"""a manager's albums: their items until flushed as one send, and the conversation's events meanwhile

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
    op.create_table(
        "album_items",
        sa.Column("id", sa.BigInteger(), autoincrement=True, primary_key=True),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("media_group_id", sa.String(200), nullable=False),
        sa.Column("kommo_message_id", sa.String(64), nullable=False, unique=True),
        sa.Column("command", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("flushed_at", sa.DateTime(timezone=True), nullable=True),
        comment="owner: router",
    )
    op.create_index(
        "ix_album_items_pending",
        "album_items",
        ["conversation_id", "id"],
        postgresql_where=sa.text("flushed_at IS NULL"),
    )
    op.create_table(
        "held_outbound",
        sa.Column("id", sa.BigInteger(), autoincrement=True, primary_key=True),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("ordering_key", sa.String(300), nullable=False),
        sa.Column("msg_id", sa.String(300), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("message_type", sa.String(200), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        comment="owner: router",
    )
    op.create_index("ix_held_outbound_conversation", "held_outbound", ["conversation_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_held_outbound_conversation", table_name="held_outbound")
    op.drop_table("held_outbound")
    op.drop_index("ix_album_items_pending", table_name="album_items")
    op.drop_table("album_items")
