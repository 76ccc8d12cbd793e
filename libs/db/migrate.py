"""Run Alembic migrations from code (the launcher, tests, the Kubernetes migrations Job)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from libs.db.engine import sync_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


if __name__ == "__main__":
    from libs.config import load_settings

    settings = load_settings()
    settings.require("database_url")
    upgrade(settings.database_url)
    print("database schema is up to date")
