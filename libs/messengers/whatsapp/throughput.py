"""WhatsApp's sending limits for the emulator (reference/messenger-apis.md §2): a business number sends at
most 80 messages per second by default (error 130429 beyond), and one number writes to one user about
once per 6 seconds, short bursts allowed (error 131056, the pair rate limit). Token buckets model both, so
a bridge that does not pace itself gets the errors in tests exactly as it would in production. Every
refusal is counted per number, so a test can show that a paced bridge caused none."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

Refusal = Literal["throughput", "pair_rate"]


@dataclass(frozen=True)
class SendLimits:
    per_number_per_s: float = 80.0
    pair_per_s: float = 1 / 6
    pair_burst: int = 45
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.per_number_per_s > 0 or not self.pair_per_s > 0:
            raise ValueError("rates must be positive")
        if self.pair_burst < 1:
            raise ValueError("pair_burst must be at least 1")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, data: dict[str, Any]) -> SendLimits:
        """A copy with the fields in `data` replaced (the control route's partial update)."""
        unknown = set(data) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown limit fields: {sorted(unknown)}")
        merged = {**asdict(self), **data}
        for key in ("per_number_per_s", "pair_per_s"):
            if isinstance(merged[key], bool) or not isinstance(merged[key], int | float):
                raise ValueError(f"{key} must be a number")
        if isinstance(merged["pair_burst"], bool) or not isinstance(merged["pair_burst"], int):
            raise ValueError("pair_burst must be an integer")
        if not isinstance(merged["enabled"], bool):
            raise ValueError("enabled must be a boolean")
        return SendLimits(
            per_number_per_s=float(merged["per_number_per_s"]),
            pair_per_s=float(merged["pair_per_s"]),
            pair_burst=merged["pair_burst"],
            enabled=merged["enabled"],
        )


class _Bucket:
    """`capacity` tokens, refilled at `rate` per second; each message spends one."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated_at = now

    def available(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated_at) * self.rate)
        self.updated_at = now
        return self.tokens >= 1

    def take(self) -> None:
        self.tokens -= 1


class SendControl:
    """Per-number and per-(number, user) buckets. A message is admitted only when both have a token."""

    def __init__(self, limits: SendLimits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or SendLimits()
        self._clock = clock
        self._numbers: dict[str, _Bucket] = {}
        self._pairs: dict[tuple[str, str], _Bucket] = {}
        self._refused: Counter[tuple[str, Refusal]] = Counter()

    def configure(self, limits: SendLimits) -> None:
        """Apply new limits; every bucket starts full again."""
        self.limits = limits
        self._numbers.clear()
        self._pairs.clear()

    def admit(self, phone_number_id: str, user: str) -> Refusal | None:
        """None when the message may go (tokens spent), else which limit it hit."""
        if not self.limits.enabled:
            return None
        now = self._clock()
        number = self._numbers.get(phone_number_id)
        if number is None:
            rate = self.limits.per_number_per_s
            number = self._numbers[phone_number_id] = _Bucket(rate, max(1.0, rate), now)
        pair = self._pairs.get((phone_number_id, user))
        if pair is None:
            pair = self._pairs[(phone_number_id, user)] = _Bucket(
                self.limits.pair_per_s, float(self.limits.pair_burst), now
            )
        refusal: Refusal | None = None
        if not number.available(now):
            refusal = "throughput"
        elif not pair.available(now):
            refusal = "pair_rate"
        if refusal is not None:
            self._refused[(phone_number_id, refusal)] += 1
            return refusal
        number.take()
        pair.take()
        return None

    def refusals(self) -> dict[str, dict[str, int]]:
        """How many messages each number had refused, by limit (kept across `configure`)."""
        counted: dict[str, dict[str, int]] = {}
        for (phone_number_id, refusal), count in sorted(self._refused.items()):
            counted.setdefault(phone_number_id, {"throughput": 0, "pair_rate": 0})[refusal] = count
        return counted
