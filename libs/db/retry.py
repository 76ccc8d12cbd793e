"""Recording an effect that already happened outside (a message the platform accepted) must not
fail on a database blip: a redelivery would repeat the effect. So such writes retry in place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from libs.errors import RetryableError

log = logging.getLogger(__name__)

T = TypeVar("T")


async def persist_after_effect(write: Callable[[], Awaitable[T]], *, attempts: int = 8, first_delay: float = 0.1) -> T:
    """Run `write`, retrying transient database failures for ~25 s before giving up."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return await write()
        except (OperationalError, DBAPIError) as exc:
            if attempt == attempts:
                raise RetryableError("could not record a completed delivery") from exc
            log.warning(
                "recording a delivery failed; retrying", extra={"attempt": attempt, "error": type(exc).__name__}
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")
