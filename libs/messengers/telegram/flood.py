"""Telegram's flood limits for the emulator, as the Bot FAQ states them: about 30 messages per second per
bot and about 1 per second per chat (short bursts allowed). Token buckets model both, so a bridge that
ignores `retry_after` gets 429s in tests exactly as it would in production."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FloodLimits:
    per_bot_per_s: float = 30.0
    per_chat_per_s: float = 1.0
    per_chat_burst: int = 20
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.per_bot_per_s > 0 or not self.per_chat_per_s > 0:
            raise ValueError("flood rates must be positive")
        if self.per_chat_burst < 1:
            raise ValueError("per_chat_burst must be at least 1")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, data: dict[str, Any]) -> FloodLimits:
        """A copy with the fields in `data` replaced (the control route's partial update)."""
        unknown = set(data) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown limit fields: {sorted(unknown)}")
        merged = {**asdict(self), **data}
        for key in ("per_bot_per_s", "per_chat_per_s"):
            if isinstance(merged[key], bool) or not isinstance(merged[key], int | float):
                raise ValueError(f"{key} must be a number")
        if isinstance(merged["per_chat_burst"], bool) or not isinstance(merged["per_chat_burst"], int):
            raise ValueError("per_chat_burst must be an integer")
        if not isinstance(merged["enabled"], bool):
            raise ValueError("enabled must be a boolean")
        return FloodLimits(
            per_bot_per_s=float(merged["per_bot_per_s"]),
            per_chat_per_s=float(merged["per_chat_per_s"]),
            per_chat_burst=merged["per_chat_burst"],
            enabled=merged["enabled"],
        )


class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second; each message spends one."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated_at = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated_at) * self.rate)
        self.updated_at = now

    def wait_s(self, now: float) -> float:
        """Seconds until one token is available (0 when one is available now)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1


class FloodControl:
    """Per-bot and per-chat buckets. A send is admitted only when both have a token, and then spends both."""

    def __init__(self, limits: FloodLimits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or FloodLimits()
        self._clock = clock
        self._bots: dict[int, TokenBucket] = {}
        self._chats: dict[tuple[int, int], TokenBucket] = {}

    def configure(self, limits: FloodLimits) -> None:
        """Apply new limits; every bucket starts full again."""
        self.limits = limits
        self._bots.clear()
        self._chats.clear()

    def admit(self, bot_id: int, chat_id: int) -> int | None:
        """None when the message may go out (tokens spent), else Telegram's `retry_after` in whole seconds."""
        if not self.limits.enabled:
            return None
        now = self._clock()
        bot = self._bots.get(bot_id)
        if bot is None:
            bot = self._bots[bot_id] = TokenBucket(self.limits.per_bot_per_s, max(1.0, self.limits.per_bot_per_s), now)
        chat = self._chats.get((bot_id, chat_id))
        if chat is None:
            chat = self._chats[(bot_id, chat_id)] = TokenBucket(
                self.limits.per_chat_per_s, float(self.limits.per_chat_burst), now
            )
        wait = max(bot.wait_s(now), chat.wait_s(now))
        if wait > 0:
            return max(1, math.ceil(wait))
        bot.take(now)
        chat.take(now)
        return None
