"""initial schema

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("scope_id", sa.String(length=200), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("display_name", sa.String(length=200), server_default="", nullable=False),
        sa.Column("source_external_id", sa.String(length=40), server_default="", nullable=False),
        sa.Column("state", sa.String(length=32), server_default="active", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("platform", "external_id", name="uq_connections_platform_external"),
        comment="owner: router",
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("chat_id", sa.String(length=200), nullable=False),
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("profile", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_message_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("connection_id", "chat_id", name="uq_conversations_connection_chat"),
        comment="owner: router",
    )
    op.create_table(
        "gateway_spool",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("ordering_key", sa.String(length=300), nullable=False),
        sa.Column("msg_id", sa.String(length=300), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        comment="owner: gateway",
    )
    op.create_table(
        "installations",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("scope_id", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=200), server_default="", nullable=False),
        sa.Column("state", sa.String(length=32), server_default="active", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
        sa.UniqueConstraint("scope_id"),
        comment="owner: auth",
    )
    op.create_table(
        "kommo_deliveries",
        sa.Column("msgid", sa.String(length=64), nullable=False),
        sa.Column("scope_id", sa.String(length=200), nullable=False),
        sa.Column("kommo_msgid", sa.String(length=64), nullable=False),
        sa.Column("kommo_chat_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("msgid"),
        comment="owner: kommo_sender",
    )
    op.create_table(
        "kommo_statuses",
        sa.Column("kommo_msgid", sa.String(length=64), nullable=False),
        sa.Column("scope_id", sa.String(length=200), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("error_code", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("kommo_msgid"),
        comment="owner: kommo_sender",
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("dedup_key", sa.String(length=300), nullable=False),
        sa.Column("platform_message_id", sa.String(length=200), server_default="", nullable=False),
        sa.Column("kommo_message_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup_key"),
        comment="owner: router",
    )
    op.create_index("ix_messages_conversation", "messages", ["conversation_id", "created_at"], unique=False)
    op.create_table(
        "messenger_deliveries",
        sa.Column("kommo_message_id", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("platform_message_id", sa.String(length=200), server_default="", nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("error_code", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("error_text", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("kommo_message_id"),
        comment="owner: messenger_sender",
    )
    op.create_table(
        "secrets",
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("owner", "kind"),
        comment="owner: auth",
    )


def downgrade() -> None:
    op.drop_table("secrets")
    op.drop_table("messenger_deliveries")
    op.drop_index("ix_messages_conversation", table_name="messages")
    op.drop_table("messages")
    op.drop_table("kommo_statuses")
    op.drop_table("kommo_deliveries")
    op.drop_table("installations")
    op.drop_table("gateway_spool")
    op.drop_table("conversations")
    op.drop_table("connections")
