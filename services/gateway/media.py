"""`GET /media/v1/{token}/{name}`: a client's file, streamed from its messenger to whoever holds the link.

Kommo downloads the files clients send from links kommo_sender signs (libs.media.links). The link is
verified first, in constant time, before anything in it is believed; then the connection's bot token
comes from auth (cached briefly) and the adapter opens the platform file, whose bytes pass through in
bounded chunks: nothing is held whole, so a 100 MB video costs the gateway no more memory than a photo.

Answers: 403 for a link we did not make for this file, 410 for an expired one, 404 when the platform no
longer has the file (or the channel was removed), 413 when the platform refuses it for its size, 502 when
the platform fails, 504 when it is too slow, 503 while the auth service is unreachable. The file is sent
as an attachment in a sandbox, so a client's HTML can never run on the gateway's origin.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from urllib.parse import quote

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from libs.config import Settings
from libs.errors import (
    BridgeError,
    CredentialRejectedError,
    NotFoundError,
    RateLimitedError,
    TimedOutError,
    TooLargeError,
)
from libs.media.links import LinkedFile, MediaLinkExpired, MediaLinkRefused, MediaLinks
from libs.messengers.registry import FileStream, MessengerAdapter, adapter_for
from libs.observability import MEDIA_DOWNLOADS
from services.gateway.credentials import GatewayCredentials

log = logging.getLogger(__name__)

DEFAULT_MIME_TYPE = "application/octet-stream"


def content_disposition(file_name: str) -> str:
    """RFC 6266: an ASCII `filename` for old clients beside the exact UTF-8 `filename*` (RFC 8187)."""
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "_" for ch in file_name) or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


def _file_headers(file: LinkedFile, mime_type: str) -> dict[str, str]:
    return {
        "Content-Type": mime_type,
        "Content-Disposition": content_disposition(file.file_name),
        # Only the holder of the link may keep a copy; no shared cache between Kommo and the world.
        "Cache-Control": "private, max-age=3600",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Referrer-Policy": "no-referrer",
    }


class MediaRefusal(Exception):
    """Why a download is answered with an error, and what the caller is told."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def link_refusal(error: MediaLinkRefused) -> MediaRefusal:
    if isinstance(error, MediaLinkExpired):
        return MediaRefusal(410, "this media link has expired")
    return MediaRefusal(403, "this media link is not valid")


def platform_refusal(error: BridgeError, platform: str) -> MediaRefusal:
    if isinstance(error, NotFoundError):
        return MediaRefusal(404, f"{platform} no longer has this file")
    if isinstance(error, TooLargeError):
        return MediaRefusal(413, f"{platform} refuses to hand this file to the bot: it is over the download limit")
    if isinstance(error, TimedOutError):
        return MediaRefusal(504, f"{platform} did not send the file in time; try again later")
    if isinstance(error, RateLimitedError):
        return MediaRefusal(503, f"{platform} asks to slow down; try again later", retry_after=error.retry_after)
    return MediaRefusal(502, f"{platform} did not deliver the file; try again later")


def _answer(refusal: MediaRefusal) -> Response:
    headers = {"Cache-Control": "no-store"}
    if refusal.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(refusal.retry_after)))
    return JSONResponse({"ok": False, "error": str(refusal)}, status_code=refusal.status, headers=headers)


class _UpstreamResponse(StreamingResponse):
    """Streams the platform's bytes and closes the platform's response however the transfer ends:
    finished, failed, or abandoned by the caller before the first byte."""

    def __init__(self, upstream: AsyncExitStack, body: FileStream, headers: dict[str, str], on_end: _Outcome) -> None:
        super().__init__(self._relay(body), headers=headers)
        self._upstream = upstream
        self._outcome = on_end

    async def _relay(self, body: FileStream) -> AsyncIterator[bytes]:
        async for chunk in body.chunks:
            self._outcome.sent += len(chunk)
            yield chunk
        self._outcome.complete = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._upstream.aclose()
            self._outcome.done()


class _Outcome:
    """Logs one transfer when it ends: how many bytes went out and whether all of them did."""

    def __init__(self, file: LinkedFile, platform: str) -> None:
        self.file = file
        self.platform = platform
        self.sent = 0
        self.complete = False
        self.started = time.monotonic()

    def done(self) -> None:
        log.log(
            logging.INFO if self.complete else logging.WARNING,
            "media served" if self.complete else "media transfer cut short",
            extra={
                "connection_id": self.file.connection_id,
                "platform": self.platform,
                "bytes": self.sent,
                "duration_s": round(time.monotonic() - self.started, 3),
            },
        )


class MediaDownloads:
    def __init__(
        self, links: MediaLinks, credentials: GatewayCredentials, http: httpx.AsyncClient, settings: Settings
    ) -> None:
        self._links = links
        self._credentials = credentials
        self._http = http
        self._settings = settings

    async def serve(self, request: Request) -> Response:
        """GET (and HEAD) /media/v1/{token}/{name}."""
        platform = "unknown"  # a metric label never taken from what the caller sent
        try:
            try:
                file = self._links.verify(request.path_params["token"], request.path_params["name"])
            except MediaLinkRefused as exc:
                raise link_refusal(exc) from None
            try:
                adapter = adapter_for(file.platform)
            except NotFoundError:
                raise MediaRefusal(404, "this messenger is not served here") from None
            platform = adapter.name
            if request.method == "HEAD":
                response = self._head(file)
            else:
                response = await self._open(file, adapter)
        except MediaRefusal as refusal:
            level = logging.WARNING if refusal.status >= 500 else logging.INFO
            log.log(level, "media link refused", extra={"status": refusal.status, "detail": str(refusal)})
            response = _answer(refusal)
        MEDIA_DOWNLOADS.labels(platform, str(response.status_code)).inc()
        return response

    def _head(self, file: LinkedFile) -> Response:
        """What a GET would answer, without asking the platform (the size is the one the link names)."""
        headers = _file_headers(file, file.mime_type or DEFAULT_MIME_TYPE)
        if file.size > 0:
            headers["Content-Length"] = str(file.size)
        return Response(status_code=200, headers=headers)

    async def _open(self, file: LinkedFile, adapter: MessengerAdapter) -> Response:
        try:
            token = await self._credentials.messenger_token(file.connection_id)
        except NotFoundError:
            raise MediaRefusal(404, "the channel this file came through is no longer connected") from None
        except BridgeError:
            raise MediaRefusal(503, "temporarily unavailable, please retry") from None
        upstream = AsyncExitStack()
        base_url = adapter.api_base_url(self._settings)
        try:
            body = await upstream.enter_async_context(adapter.open_file(self._http, base_url, token, file.file_ref))
        except CredentialRejectedError as exc:
            self._credentials.forget_messenger_token(file.connection_id)
            raise platform_refusal(exc, adapter.name.capitalize()) from None
        except BridgeError as exc:
            raise platform_refusal(exc, adapter.name.capitalize()) from None
        # The MIME type the client's message named; the platform's own only when the message had none.
        headers = _file_headers(file, file.mime_type or body.mime_type or DEFAULT_MIME_TYPE)
        if body.size is not None:
            headers["Content-Length"] = str(body.size)
        return _UpstreamResponse(upstream, body, headers, _Outcome(file, adapter.name))
