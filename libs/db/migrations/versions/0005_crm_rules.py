"""CRM rules: channel settings, closed conversations, Kommo sources and chats, the shared REST limiter

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("connections", sa.Column("source_name", sa.String(200), server_default="", nullable=False))
    op.add_column("connections", sa.Column("pipeline_id", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column("connections", sa.Column("contact_rule", sa.String(16), server_default="create", nullable=False))
    op.add_column("connections", sa.Column("update_profiles", sa.Boolean(), server_default=sa.true(), nullable=False))
    op.add_column("connections", sa.Column("robot_label", sa.String(64), server_default="🤖", nullable=False))
    op.add_column("conversations", sa.Column("state", sa.String(16), server_default="open", nullable=False))
    op.add_column("conversations", sa.Column("closed_reason", sa.String(16), server_default="", nullable=False))
    op.add_column("conversations", sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("held_commands", sa.Column("message_type", sa.String(200), server_default="", nullable=False))
    op.create_table(
        "kommo_sources",
        sa.Column("scope_id", sa.String(200), primary_key=True),
        sa.Column("external_id", sa.String(40), primary_key=True),
        sa.Column("kommo_source_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("pipeline_id", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        comment="owner: kommo_sender",
    )
    op.create_table(
        "kommo_chats",
        sa.Column("scope_id", sa.String(200), primary_key=True),
        sa.Column("conversation_id", sa.String(64), primary_key=True),
        sa.Column("kommo_chat_id", sa.String(64), server_default="", nullable=False),
        sa.Column("contact_id", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        comment="owner: kommo_sender",
    )
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        comment="owner: libs.ratelimit (shared by every caller of a rate-limited API)",
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
    op.drop_table("kommo_chats")
    op.drop_table("kommo_sources")
    op.drop_column("held_commands", "message_type")
    for column in ("closed_at", "closed_reason", "state"):
        op.drop_column("conversations", column)
    for column in ("robot_label", "update_profiles", "contact_rule", "pipeline_id", "source_name"):
        op.drop_column("connections", column)
