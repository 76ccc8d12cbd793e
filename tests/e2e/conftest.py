"""An end-to-end stack per test: emulators and the five services as separate processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from libs.devstack.embedded import EmbeddedNats
from libs.devstack.stack import Stack
from tests.e2e.sandbox import Sandbox


async def start_sandbox(tmp_path: Path, database_url: str, nats_url: str) -> tuple[Stack, Sandbox, httpx.AsyncClient]:
    stack = Stack(tmp_path / "stack", database_url, nats_url, partitions=8)
    await asyncio.to_thread(stack.start)
    channel = await stack.connect_sandbox()
    http = httpx.AsyncClient(timeout=30)
    return stack, Sandbox(stack, channel, http), http


@pytest.fixture
async def sandbox(tmp_path: Path, database_url: str, nats_url: str) -> AsyncIterator[Sandbox]:
    stack, sandbox, http = await start_sandbox(tmp_path, database_url, nats_url)
    try:
        yield sandbox
    finally:
        await http.aclose()
        await asyncio.to_thread(stack.stop)


@pytest.fixture(scope="module")
async def shared_sandbox(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str, module_nats_url: str
) -> AsyncIterator[Sandbox]:
    """One stack for every test of a module: starting five services costs seconds, so modules whose
    tests cannot disturb each other (each uses clients of its own) share one."""
    stack, sandbox, http = await start_sandbox(tmp_path_factory.mktemp("shared"), module_database_url, module_nats_url)
    try:
        yield sandbox
    finally:
        await http.aclose()
        await asyncio.to_thread(stack.stop)


@pytest.fixture
async def sandbox_own_broker(
    tmp_path: Path, database_url: str, embedded_nats: EmbeddedNats
) -> AsyncIterator[tuple[Sandbox, EmbeddedNats]]:
    """A sandbox on a nats-server this test may stop and start."""
    stack, sandbox, http = await start_sandbox(tmp_path, database_url, embedded_nats.url)
    try:
        yield sandbox, embedded_nats
    finally:
        await http.aclose()
        await asyncio.to_thread(stack.stop)
