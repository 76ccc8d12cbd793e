"""Alembic environment: migrations run synchronously over psycopg 3."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from libs.db.schema import metadata

config = context.config
engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        # One migrator at a time across replicas / jobs.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7201355)")
        context.run_migrations()
engine.dispose()
