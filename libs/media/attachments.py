"""A manager's attachment read from Kommo on its way to a messenger that cannot fetch it by URL itself.

amojo serves a message's `media` at a public URL (kommo-chats-api §4). A platform that takes only uploads
(or cannot reach the URL) gets the bytes streamed through: the download from Kommo feeds the upload chunk
by chunk, so memory stays bounded whatever the file's size. Failures are named by the file, never by its
URL, and an httpx error (whose text holds the URL) is never chained.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Final

import httpx

from libs import status_texts
from libs.errors import BridgeError, NotFoundError, PermanentError, RetryableError, TimedOutError, TooLargeError
from libs.media.streams import content_length, open_stream, response_chunks, served_mime_type

CHUNK_BYTES: Final = 256 * 1024


@dataclass(frozen=True)
class OpenAttachment:
    """An attachment being read: the size Kommo announced (None when it did not), the MIME type it serves
    ("" for none or a generic octet stream), and the response whose bytes `chunks` reads."""

    size: int | None
    served_mime_type: str
    response: httpx.Response


def attachment_failure(file_name: str, outcome: httpx.Response | Exception) -> BridgeError:
    """The one mapping of a failed attachment download from Kommo; never names the URL."""
    where = f"kommo attachment {file_name!r}"
    if isinstance(outcome, httpx.TimeoutException):
        return TimedOutError(f"{where}: the download timed out ({type(outcome).__name__})")
    if isinstance(outcome, Exception):
        return RetryableError(f"{where}: the download failed ({type(outcome).__name__})")
    status = outcome.status_code
    if status == 429 or status >= 500:
        return RetryableError(f"{where}: Kommo answered HTTP {status}")
    reason, args = status_texts.FILE_UNAVAILABLE, {"name": file_name}
    if status in (403, 404, 410):
        message = f"{where}: the file is no longer available in Kommo (HTTP {status})"
        return NotFoundError(message, reason=reason, reason_args=args)
    return PermanentError(f"{where}: Kommo refused the download (HTTP {status})", reason=reason, reason_args=args)


@asynccontextmanager
async def open_attachment(http: httpx.AsyncClient, url: str, file_name: str) -> AsyncIterator[OpenAttachment]:
    """GET the attachment, streamed; the response is closed on exit."""
    # identity: a compressed answer would make Content-Length disagree with the bytes passed on.
    request = http.build_request("GET", url, headers={"Accept-Encoding": "identity"})
    failure = partial(attachment_failure, file_name)
    async with open_stream(http, request, failure, follow_redirects=True) as response:
        served = served_mime_type(response).lower()
        yield OpenAttachment(
            size=content_length(response),
            served_mime_type="" if served == "application/octet-stream" else served,
            response=response,
        )


async def chunks(
    attachment: OpenAttachment, file_name: str, *, limit: int | None = None, platform: str = ""
) -> AsyncIterator[bytes]:
    """The attachment's bytes as they arrive. TooLargeError once past `limit` (the caller checked the
    announced size; this catches a file that turns out larger), RetryableError when fewer bytes came than
    announced (a cut connection must not send a truncated file)."""
    received = 0
    async for chunk in response_chunks(attachment.response, CHUNK_BYTES, partial(attachment_failure, file_name)):
        received += len(chunk)
        if limit is not None and received > limit:
            raise TooLargeError(
                f"kommo attachment {file_name!r}: more than the {limit} bytes {platform or 'the messenger'} takes",
                reason=status_texts.FILE_TOO_LARGE,
                reason_args={"name": file_name, "size": str(received), "limit": str(limit), "platform": platform},
            )
        yield chunk
    if attachment.size is not None and received != attachment.size:
        raise RetryableError(f"kommo attachment {file_name!r}: got {received} of {attachment.size} bytes")
