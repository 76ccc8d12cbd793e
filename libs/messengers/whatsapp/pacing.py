"""A business number's messages paced to WhatsApp's sending limits, shared by every messenger_sender replica.

Meta lets a number send 80 messages/s by default (up to 1000 once upgraded; beyond it, 130429) and one
number write to one user about once per 6 s, short bursts allowed (beyond it, 131056): reference §2. So
each message waits for its slot in two limits kept in PostgreSQL (libs/ratelimit.py), whichever replica
sends it: `whatsapp:number:<phone_number_id>` at the configured rate (the number's own, if it has one), and
`whatsapp:pair:<phone_number_id>:<client>` at the pair rate with its burst.

What counts is what Meta counts as a message: every `POST /{phone-number-id}/messages` that sends one
(text, file, location, contact, template, reaction, the text that follows a file whose caption was too
long). Media uploads (`/media`) are not messages and are limited separately; read marks and typing
indicators only change a message's status (typing is already at most one per chat every few seconds,
and fire and forget), so neither waits for a slot nor uses one.

A refusal anyway (another app sending from the same number, Meta lowering the limit) moves the limit it
names back for every replica: 130429, 4 and 80007 the number's, 131056 the pair's. The error still goes
up, so the message is retried after a pause (`libs.ratelimit.retry_pause`) and never becomes a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from libs.errors import RateLimitedError
from libs.ratelimit import Limit, SharedRateLimiter

NUMBER_KEY: Final = "whatsapp:number:{phone_number_id}"
PAIR_KEY: Final = "whatsapp:pair:{phone_number_id}:{client}"
PAIR_RATE_REFUSED: Final = "whatsapp_pair_rate_limit"
"""The `code` of the RateLimitedError for a 131056: the pair's limit, not the number's, was hit."""
THROUGHPUT_REFUSED: Final = "whatsapp_throughput_limit"
"""The `code` of the RateLimitedError for 130429 / 4 / 80007 / HTTP 429: the number's (or app's) limit."""
_DEFAULT_PAUSE_S: Final = 1.0


@dataclass(frozen=True)
class SendRates:
    """How fast a number sends: messages per second in all (unless the number has a rate of its own: Meta
    upgrades numbers one by one), and to one client (with the burst allowed)."""

    per_number: float = 80.0
    pair_per_second: float = 1 / 6
    pair_burst: int = 45
    numbers: Mapping[str, float] = field(default_factory=dict)

    def of_number(self, phone_number_id: str) -> float:
        return self.numbers.get(phone_number_id, self.per_number)


class SendPacing:
    """Waits for each message's turn in the shared limits, and moves them back when WhatsApp refuses."""

    def __init__(self, limiter: SharedRateLimiter, rates: SendRates) -> None:
        self._limiter = limiter
        self.rates = rates

    def number_limit(self, phone_number_id: str) -> Limit:
        return Limit(NUMBER_KEY.format(phone_number_id=phone_number_id), self.rates.of_number(phone_number_id))

    def pair_limit(self, phone_number_id: str, client: str) -> Limit:
        key = PAIR_KEY.format(phone_number_id=phone_number_id, client=client)
        return Limit(key, self.rates.pair_per_second, burst=self.rates.pair_burst)

    async def before_send(self, phone_number_id: str, client: str) -> None:
        """Wait until both the number and this client's pair may take one more message: one reservation
        of both, so the message goes at a moment both allow (taken one after the other, a long wait for
        the second would make the first's slot stale, and a client's messages could bunch past its pair
        limit). The price: a client past their burst moves the number's next slot to their own, so the
        number's other clients wait with them (README, WhatsApp's sending limits)."""
        await self._limiter.acquire([self.number_limit(phone_number_id), self.pair_limit(phone_number_id, client)])

    async def refused(self, phone_number_id: str, client: str, error: RateLimitedError) -> None:
        """WhatsApp refused a message for a limit: no replica sends under that limit before its pause ends."""
        hit = self.pair_limit(phone_number_id, client) if error.code == PAIR_RATE_REFUSED else None
        limit = hit or self.number_limit(phone_number_id)
        await self._limiter.defer([limit], error.retry_after if error.retry_after is not None else _DEFAULT_PAUSE_S)
