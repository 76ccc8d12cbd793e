"""How the gateway's media route answers: the refusals' statuses and the file's Content-Disposition."""

from __future__ import annotations

import pytest

from libs.errors import (
    BridgeError,
    CredentialRejectedError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    TimedOutError,
    TooLargeError,
)
from libs.kommo.emulator.media_downloads import disposition_file_name
from libs.media import MediaLinkExpired, MediaLinkRefused
from services.gateway.media import content_disposition, link_refusal, platform_refusal


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFoundError("telegram file download: the file is no longer available (404)"), 404),
        (TooLargeError("telegram getFile: Bad Request: file is too big"), 413),
        (TimedOutError("telegram file download: timed out (ReadTimeout)"), 504),
        (RateLimitedError("telegram getFile: Too Many Requests", retry_after=7), 503),
        (RetryableError("telegram file download: Telegram failed (HTTP 500)"), 502),
        (CredentialRejectedError("telegram getFile: the bot token was rejected"), 502),
        (PermanentError("telegram file download: refused (HTTP 400)"), 502),
    ],
)
def test_platform_failures_map_to_what_a_proxy_answers(error: BridgeError, status: int) -> None:
    refusal = platform_refusal(error, "Telegram")
    assert refusal.status == status
    assert "telegram" not in str(refusal), "the caller reads a sentence, not our error"
    assert refusal.retry_after == (7 if status == 503 else None)


def test_links_are_refused_as_forbidden_or_gone() -> None:
    assert link_refusal(MediaLinkRefused("media link: the signature does not match")).status == 403
    assert link_refusal(MediaLinkExpired("media link: the link has expired")).status == 410


@pytest.mark.parametrize("name", ["invoice.pdf", "Счёт №5.pdf", 'quote " and \\ slash.txt', "日本 語.docx"])
def test_content_disposition_carries_the_exact_name_and_an_ascii_fallback(name: str) -> None:
    value = content_disposition(name)
    assert value.startswith('attachment; filename="')
    fallback = value.split('"')[1]
    assert fallback.isascii() and '"' not in fallback and "\\" not in fallback
    assert disposition_file_name(value) == name
