"""The lookup cache (stale copies through outages) and log redaction."""

from __future__ import annotations

import io
import json
import logging

import pytest

from libs.errors import NotFoundError, RetryableError
from libs.logs import JsonFormatter
from libs.runtime import TtlCache


async def test_cache_serves_a_stale_copy_while_its_source_is_down() -> None:
    calls: list[str] = []
    outage = False

    async def load(key: str) -> str:
        calls.append(key)
        if outage:
            raise RetryableError("auth unavailable")
        return f"value-{len(calls)}"

    cache: TtlCache[str, str] = TtlCache(0.0, load)  # always stale: every get tries the source
    assert await cache.get("a") == "value-1"
    outage = True
    assert await cache.get("a") == "value-1"
    with pytest.raises(RetryableError):
        await cache.get("never-loaded")
    outage = False
    assert await cache.get("a") == "value-4"


async def test_cache_does_not_hide_permanent_answers() -> None:
    async def load(key: str) -> str:
        raise NotFoundError(key)

    with pytest.raises(NotFoundError):
        await TtlCache(60.0, load).get("x")


def test_logs_are_json_and_carry_no_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    token = "123456789:AAE" + "x" * 32
    logger.warning(
        "calling https://api.telegram.org/bot%s/sendMessage with Bearer abcdefghijkl",
        token,
        extra={"bot_token": token, "channel_secret": "f" * 40, "message_key": "conv-1", "connection_id": "c1"},
    )
    line = stream.getvalue()
    entry = json.loads(line)
    assert token not in line and "abcdefghijkl" not in line and "f" * 40 not in line
    assert entry["bot_token"] == "[redacted]" and entry["channel_secret"] == "[redacted]"
    assert entry["message_key"] == "conv-1" and entry["connection_id"] == "c1"
    assert entry["service"] == "test" and entry["level"] == "warning"
