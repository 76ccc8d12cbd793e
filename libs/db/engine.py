"""Async engines over psycopg 3."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def sync_url(url: str) -> str:
    """The same database for synchronous tools (Alembic)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(sync_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
