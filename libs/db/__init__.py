"""PostgreSQL access: one schema (each table owned by one service), Alembic migrations, engines."""

from libs.db.engine import create_engine, sync_url
from libs.db.migrate import upgrade

__all__ = ["create_engine", "sync_url", "upgrade"]
