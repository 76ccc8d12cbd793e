"""settings window sessions opened with Kommo's one-time tokens

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settings_sessions",
        sa.Column("ticket_hash", sa.String(64), primary_key=True),
        sa.Column("session_hash", sa.String(64), nullable=True, unique=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("kommo_user_id", sa.String(64), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("ticket_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        comment="owner: auth",
    )
    op.create_table(
        "used_widget_tokens",
        sa.Column("jti", sa.String(100), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        comment="owner: auth",
    )


def downgrade() -> None:
    op.drop_table("used_widget_tokens")
    op.drop_table("settings_sessions")
