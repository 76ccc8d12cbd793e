"""template reviews: a Kommo chat template (type waba) a user asked to have reviewed, paired with the
template submitted for it to Meta, so Meta's verdict is written back to that review and the periodic sync
never mirrors it a second time

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "template_reviews",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("kommo_template_id", sa.BigInteger, nullable=False),
        sa.Column("review_id", sa.BigInteger, nullable=False),
        sa.Column("connection_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("waba_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("meta_name", sa.String(512), nullable=False, server_default=""),
        sa.Column("language", sa.String(16), nullable=False, server_default=""),
        sa.Column("meta_template_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("external_key", sa.String(200), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False, server_default="submitting"),
        sa.Column("reject_reason", sa.Text, nullable=False, server_default=""),
        sa.Column("reported_status", sa.String(16), nullable=False, server_default=""),
        sa.Column("markers", postgresql.JSONB, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("account_id", "kommo_template_id", "review_id", name="uq_template_reviews_review"),
        comment="owner: router",
    )
    op.create_index("ix_template_reviews_meta", "template_reviews", ["waba_id", "meta_name", "language"])


def downgrade() -> None:
    op.drop_index("ix_template_reviews_meta", table_name="template_reviews")
    op.drop_table("template_reviews")
