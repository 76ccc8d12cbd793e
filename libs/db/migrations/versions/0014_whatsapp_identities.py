"""client identities: every id a platform names a client by (a phone number, a business-scoped user id),
mapped to the one chat id their conversation was opened with, with the client's current phone and user id
(where a manager's reply goes)

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "client_identities",
        sa.Column("connection_id", sa.String(64), primary_key=True),
        sa.Column("alias", sa.String(200), primary_key=True),
        sa.Column("chat_id", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(64), server_default="", nullable=False),
        sa.Column("platform_user_id", sa.String(200), server_default="", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        comment="owner: router",
    )
    op.create_index("ix_client_identities_chat", "client_identities", ["connection_id", "chat_id"])


def downgrade() -> None:
    op.drop_index("ix_client_identities_chat", table_name="client_identities")
    op.drop_table("client_identities")
