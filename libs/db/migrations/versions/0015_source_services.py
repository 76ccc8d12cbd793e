"""kommo sources: the `services` each was last given in Kommo (a WhatsApp number's source declares list
messages and template reviews), so an existing source gets them on its next sync

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("kommo_sources", sa.Column("services", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    op.drop_column("kommo_sources", "services")
