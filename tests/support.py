"""Helpers shared by tests: waiting on conditions (never on fixed sleeps), a clock tests move."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 60.0, interval: float = 0.1, what: str = ""
) -> None:
    """Poll `condition` until it holds; fail with `what` after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or 'condition'}")
        await asyncio.sleep(interval)


class ManualClock:
    """A clock tests move instead of sleeping; pass it where code takes `clock: Callable[[], datetime]`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
