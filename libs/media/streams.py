"""A file fetched over HTTP as a stream, its failures named without the URL.

Every file the bridge passes on (a client's file from a platform, a manager's attachment from Kommo) is
read this way: one streamed GET whose response is closed on exit, and its bytes in bounded chunks. The
URL may carry a secret (a bot token in a Telegram file path, a signed lookaside URL), so a failure is
mapped by the caller's `failure` onto libs.errors and raised outside the except clause: the httpx error,
whose request holds the URL and headers, is never chained.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from libs.errors import BridgeError

# Maps a failed request (an httpx error, or an answer that is not a success) onto libs.errors.
FailureMapping = Callable[[httpx.Response | Exception], BridgeError]


@asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient,
    request: httpx.Request,
    failure: FailureMapping,
    *,
    follow_redirects: bool | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT,
) -> AsyncIterator[httpx.Response]:
    """Send `request` streamed; the successful response, closed on exit. Redirects are followed as the
    client is set to unless `follow_redirects` says otherwise."""
    outcome: httpx.Response | Exception
    try:
        outcome = await http.send(request, stream=True, follow_redirects=follow_redirects)
    except httpx.HTTPError as exc:
        outcome = exc
    if isinstance(outcome, Exception):
        raise failure(outcome)
    try:
        if not outcome.is_success:
            raise failure(outcome)
        yield outcome
    finally:
        await outcome.aclose()


async def response_chunks(response: httpx.Response, chunk_bytes: int, failure: FailureMapping) -> AsyncIterator[bytes]:
    """The response's bytes as they arrive, at most `chunk_bytes` at a time; a cut stream is `failure`."""
    iterator = response.aiter_bytes(chunk_bytes)
    while True:
        error: BridgeError | None = None
        chunk = b""
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except httpx.HTTPError as exc:
            error = failure(exc)
        if error is not None:
            raise error  # outside the handler: the httpx error is not chained
        yield chunk


def content_length(response: httpx.Response) -> int | None:
    """The size the response announces, None when it does not."""
    length = response.headers.get("content-length", "")
    return int(length) if length.isdigit() else None


def served_mime_type(response: httpx.Response) -> str:
    """The MIME type the response announces, without its parameters ("" for none)."""
    mime_type: str = response.headers.get("content-type", "")
    return mime_type.split(";")[0].strip()
