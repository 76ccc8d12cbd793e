"""Which limits a WhatsApp message waits for, which one a refusal holds back, and how they are configured
(the limiter itself is proven against PostgreSQL in tests/integration/test_rate_limit.py)."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import pytest

from libs.config import ConfigError, load_settings
from libs.errors import RateLimitedError
from libs.messengers.registry import paced
from libs.messengers.telegram.adapter import TelegramAdapter
from libs.messengers.whatsapp.adapter import WhatsAppAdapter
from libs.messengers.whatsapp.graph_errors import failure
from libs.messengers.whatsapp.pacing import PAIR_RATE_REFUSED, THROUGHPUT_REFUSED, SendPacing, SendRates
from libs.ratelimit import Limit, SharedRateLimiter

NUMBER = "106540352242922"


class RecordingLimiter(SharedRateLimiter):
    """Records what a pacing asks of the shared limiter instead of asking PostgreSQL."""

    def __init__(self) -> None:
        self.acquired: list[list[Limit]] = []
        self.deferred: list[tuple[list[Limit], float]] = []

    async def acquire(self, limits: Sequence[Limit]) -> float:
        self.acquired.append(list(limits))
        return 0.0

    async def defer(self, limits: Sequence[Limit], seconds: float) -> None:
        self.deferred.append((list(limits), seconds))


def graph_refusal(code: int) -> RateLimitedError:
    response = httpx.Response(400, json={"error": {"code": code, "message": f"({code}) limited"}})
    error = failure("send", response)
    assert isinstance(error, RateLimitedError)
    return error


async def test_a_message_waits_for_its_number_and_its_pair_the_pair_with_its_burst() -> None:
    limiter = RecordingLimiter()
    pacing = SendPacing(limiter, SendRates(per_number=80, pair_per_second=1 / 6, pair_burst=45))
    await pacing.before_send(NUMBER, "34600111222")
    [[number, pair]] = limiter.acquired  # one reservation: the message goes when both allow it
    assert (number.key, number.per_second, number.burst) == (f"whatsapp:number:{NUMBER}", 80, 1)
    assert (pair.key, pair.per_second, pair.burst) == (f"whatsapp:pair:{NUMBER}:34600111222", 1 / 6, 45)


@pytest.mark.parametrize(
    ("code", "kind", "held", "pause"),
    [
        (130429, THROUGHPUT_REFUSED, "whatsapp:number:", 1.0),
        (80007, THROUGHPUT_REFUSED, "whatsapp:number:", 60.0),
        (4, THROUGHPUT_REFUSED, "whatsapp:number:", 60.0),
        (131056, PAIR_RATE_REFUSED, "whatsapp:pair:", 6.0),
    ],
)
async def test_a_refusal_holds_back_the_limit_it_names_for_its_pause(
    code: int, kind: str, held: str, pause: float
) -> None:
    limiter = RecordingLimiter()
    pacing = SendPacing(limiter, SendRates())
    refusal = graph_refusal(code)
    assert refusal.code == kind
    await pacing.refused(NUMBER, "34600111222", refusal)
    [([limit], seconds)] = limiter.deferred
    assert limit.key.startswith(held) and seconds == pause


def test_rates_come_from_settings_with_a_rate_of_its_own_for_an_upgraded_number() -> None:
    settings = load_settings(
        whatsapp_send_rate=80,
        whatsapp_pair_rate=0.5,
        whatsapp_pair_burst=10,
        whatsapp_send_rate_overrides=f" {NUMBER}=1000, 106540352242923=250 ",
    )
    adapter = paced(WhatsAppAdapter(), RecordingLimiter(), settings)
    assert isinstance(adapter, WhatsAppAdapter) and adapter.pacing is not None
    assert WhatsAppAdapter().pacing is None  # the gateway's and router's: they send nothing
    pacing = adapter.pacing
    assert (pacing.rates.pair_per_second, pacing.rates.pair_burst) == (0.5, 10)
    assert pacing.number_limit(NUMBER).per_second == 1000
    assert pacing.number_limit("106540352242923").per_second == 250
    assert pacing.number_limit("1").per_second == 80
    telegram = TelegramAdapter()
    assert paced(telegram, RecordingLimiter(), settings) is telegram  # Telegram sends unpaced here


@pytest.mark.parametrize("overrides", ["123", "abc=10", "123=0", "123=1001", "123=fast", f"{NUMBER}=80,=5"])
def test_a_bad_rate_override_is_refused_naming_the_variable(overrides: str) -> None:
    with pytest.raises(ConfigError, match="BRIDGE_WHATSAPP_SEND_RATE_OVERRIDES"):
        load_settings(whatsapp_send_rate_overrides=overrides)
