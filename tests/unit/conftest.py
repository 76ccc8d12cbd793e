"""Fixtures of the unit tests that drive the Telegram emulator in-process (a module may override
`emulator`, e.g. with other retry timings; `http` then talks to that one)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from libs.messengers.telegram.emulator import TelegramEmulator, TelegramState, create_telegram_emulator

TELEGRAM_BASE = "http://telegram.test"


@pytest.fixture
async def emulator() -> AsyncIterator[TelegramEmulator]:
    emu = create_telegram_emulator(TelegramState())
    yield emu
    await emu.state.aclose()


@pytest.fixture
async def http(emulator: TelegramEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose requests reach the emulator app directly (no socket)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator.app), base_url=TELEGRAM_BASE) as client:
        yield client
