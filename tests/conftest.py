"""Real infrastructure for every test: PostgreSQL and NATS JetStream, embedded unless
BRIDGE_DATABASE_URL / BRIDGE_NATS_URL point elsewhere. Each test gets its own database; tests that
stop or restart a broker get their own nats-server."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import psycopg
import pytest
from sqlalchemy.engine import make_url

from libs.bus.topology import Stream
from libs.db import upgrade
from libs.devstack.embedded import EmbeddedNats, EmbeddedPostgres


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("BRIDGE_DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres"))
    yield server.database_url("postgres")
    server.stop()


@contextlib.contextmanager
def _fresh_database(postgres_admin_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = make_url(postgres_admin_url)
    admin_dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    with _fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_database_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, migrated database shared by the tests of one module (for a stack they share)."""
    with _fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def embedded_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A nats-server of this test's own, which the test may stop and start again."""
    server = EmbeddedNats(tmp_path / "nats")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_embedded_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    yield server
    server.stop()


async def _emptied(external: str) -> str:
    nc = await nats.connect(external)
    js = nc.jetstream()
    for stream in Stream:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream.stream_name)
    await nc.close()
    return external


@pytest.fixture
async def nats_url(embedded_nats: EmbeddedNats) -> AsyncIterator[str]:
    """NATS for a test that does not touch the broker itself: the external one when configured
    (with this project's streams emptied first), otherwise the test's own."""
    external = os.environ.get("BRIDGE_NATS_URL")
    yield await _emptied(external) if external else embedded_nats.url


@pytest.fixture(scope="module")
async def module_nats_url(module_embedded_nats: EmbeddedNats) -> AsyncIterator[str]:
    """Like `nats_url`, shared by the tests of one module."""
    external = os.environ.get("BRIDGE_NATS_URL")
    yield await _emptied(external) if external else module_embedded_nats.url
