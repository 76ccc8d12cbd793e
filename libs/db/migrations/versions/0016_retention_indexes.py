"""retention indexes: the time columns retention deletes by (libs/db/retention.py), so a batch is found
through an index, never by scanning the table

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_delivery_events_recorded_at", "delivery_events", "recorded_at"),
    ("ix_oauth_states_expires_at", "oauth_states", "expires_at"),
    ("ix_settings_sessions_expires_at", "settings_sessions", "expires_at"),
    ("ix_used_widget_tokens_expires_at", "used_widget_tokens", "expires_at"),
)


def upgrade() -> None:
    for name, table, column in _INDEXES:
        op.create_index(name, table, [column])
    op.create_index(
        "ix_album_items_flushed", "album_items", ["flushed_at"], postgresql_where=sa.text("flushed_at IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_album_items_flushed", table_name="album_items")
    for name, table, _column in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
