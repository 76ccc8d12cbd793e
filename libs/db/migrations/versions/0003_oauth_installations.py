"""OAuth installations: account domain and id, token kind and expiry, issued install states

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("installations", sa.Column("domain", sa.String(255), server_default="", nullable=False))
    op.add_column("installations", sa.Column("kommo_account_id", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column("installations", sa.Column("token_kind", sa.String(16), server_default="", nullable=False))
    op.add_column("installations", sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("installations", sa.Column("last_error", sa.Text(), server_default="", nullable=False))
    op.create_index("ix_installations_kommo_account_id", "installations", ["kommo_account_id"])
    op.create_table(
        "oauth_states",
        sa.Column("state", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        comment="owner: auth",
    )


def downgrade() -> None:
    op.drop_table("oauth_states")
    op.drop_index("ix_installations_kommo_account_id", table_name="installations")
    for column in ("last_error", "token_expires_at", "token_kind", "kommo_account_id", "domain"):
        op.drop_column("installations", column)
