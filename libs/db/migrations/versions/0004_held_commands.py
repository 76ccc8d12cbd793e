"""messages parked while their Kommo account needs re-authorisation

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "held_commands",
        sa.Column("id", sa.BigInteger(), autoincrement=True, primary_key=True),
        sa.Column("scope_id", sa.String(200), nullable=False),
        sa.Column("ordering_key", sa.String(300), nullable=False),
        sa.Column("msg_id", sa.String(300), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        comment="owner: kommo_sender",
    )
    op.create_index("ix_held_commands_scope", "held_commands", ["scope_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_held_commands_scope", table_name="held_commands")
    op.drop_table("held_commands")
