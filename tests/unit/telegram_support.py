"""Helpers of the unit tests that call the Telegram emulator's Bot API as a bot would."""

from __future__ import annotations

from typing import Any

import httpx

from libs.messengers.telegram.emulator_state import Bot


async def api(http: httpx.AsyncClient, bot: Bot, method: str, **params: Any) -> httpx.Response:
    """Call a Bot API method of `bot` with JSON parameters."""
    return await http.post(f"/bot{bot.token}/{method}", json=params)


def assert_error(response: httpx.Response, code: int, description: str) -> None:
    """The answer is Telegram's error envelope with exactly this code and description."""
    assert response.status_code == code
    assert response.json() == {"ok": False, "error_code": code, "description": description}
