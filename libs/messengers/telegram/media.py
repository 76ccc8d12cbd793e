"""Telegram media transfer (reference/messenger-apis.md §1, "Media download"), both directions.

Limits: the cloud Bot API lets a bot download files up to 20 MB and upload up to 50 MB. A self-hosted
telegram-bot-api server in `--local` mode (`BRIDGE_TELEGRAM_LOCAL_API=true`) has no download limit and
takes uploads up to 2000 MB.

The bot token is part of every file URL (and, in local mode, of the paths getFile returns): nothing here
logs it, puts it in an error, or chains an httpx exception that would carry the URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import httpx
from kommo_bridge.events.v1 import content_pb2

from libs import status_texts
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
from libs.media.attachments import OpenAttachment, open_attachment
from libs.media.attachments import chunks as attachment_chunks
from libs.media.multipart import MultipartBody
from libs.media.outbound_files import OutboundFile, mime_type_of, platform_can_fetch
from libs.media.streams import content_length, open_stream, response_chunks, served_mime_type
from libs.messengers.registry import FileStream, MediaLimits
from libs.messengers.telegram.adapter import TelegramBotClient

log = logging.getLogger(__name__)

MB: Final = 2**20
CLOUD_DOWNLOAD_LIMIT: Final = 20 * MB
CLOUD_UPLOAD_LIMIT: Final = 50 * MB
LOCAL_UPLOAD_LIMIT: Final = 2000 * MB


def telegram_media_limits(local_api: bool) -> MediaLimits:
    """The Bot API's limits for the configured server: the cloud's, or a local server's."""
    if local_api:
        return MediaLimits(download_bytes=None, upload_bytes=LOCAL_UPLOAD_LIMIT)
    return MediaLimits(download_bytes=CLOUD_DOWNLOAD_LIMIT, upload_bytes=CLOUD_UPLOAD_LIMIT)


# ---------------------------------------------------------------------------------------------------------
# Download: a client's file, streamed from Telegram (client -> Kommo, served by the gateway's media links).
#
# getFile turns a file_id into a file_path; GET {api}/file/bot<token>/<file_path> then serves the bytes.
# A local Bot API server answers getFile with an absolute path in its working directory
# (/var/lib/telegram-bot-api/<token>/documents/file_3.pdf) and serves no files itself: a static file server
# in front of it maps /file/bot<token>/<path> to <working dir>/<token>/<path> (as in the example setup of
# aiogram/telegram-bot-api), so the path is requested relative to the bot's directory.

DOWNLOAD_CHUNK_BYTES: Final = 64 * 1024
# getFile descriptions (400) that mean the file itself cannot be had, as opposed to a bad call.
_TOO_BIG = "file is too big"
_GONE_MARKERS: Final = ("invalid file_id", "wrong file_id", "file not found", "file_id")


@dataclass(frozen=True)
class TelegramFile:
    """The Bot API's File object: `file_path` is where to download it (valid for at least an hour)."""

    file_id: str
    file_unique_id: str
    file_size: int | None
    file_path: str


async def get_file(client: TelegramBotClient, file_id: str) -> TelegramFile:
    """getFile, with Telegram's refusals as our errors: over the limit is TooLargeError, an unknown or
    expired file_id NotFoundError."""
    try:
        result = await client.get_file(file_id)
    except PermanentError as exc:
        description = str(exc).lower()
        if _TOO_BIG in description:
            raise TooLargeError(str(exc)) from None
        if any(marker in description for marker in _GONE_MARKERS):
            raise NotFoundError(str(exc)) from None
        raise
    path = result.get("file_path")
    size = result.get("file_size")
    if not isinstance(path, str) or not path:
        raise NotFoundError("telegram getFile: the file cannot be downloaded now (no file_path)")
    return TelegramFile(
        file_id=str(result.get("file_id") or file_id),
        file_unique_id=str(result.get("file_unique_id") or ""),
        file_size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        file_path=path,
    )


def download_path(file_path: str, token: str) -> str:
    """The path to request under /file/bot<token>/: as given by the cloud, or relative to the bot's own
    directory when a local server gave an absolute one."""
    if not file_path.startswith("/"):
        return file_path
    marker = f"/{token}/"
    index = file_path.find(marker)
    if index < 0:
        raise PermanentError("telegram getFile: the local server gave a path outside the bot's directory")
    return file_path[index + len(marker) :]


def _download_failure(outcome: httpx.Response | Exception) -> BridgeError:
    """The one mapping of a failed file download onto libs.errors; never names the URL."""
    where = "telegram file download"
    if isinstance(outcome, httpx.TimeoutException):
        return TimedOutError(f"{where}: timed out ({type(outcome).__name__})")
    if isinstance(outcome, httpx.TransportError):
        return RetryableError(f"{where}: connection failed ({type(outcome).__name__})")
    if isinstance(outcome, Exception):
        return RetryableError(f"{where}: failed ({type(outcome).__name__})")
    status = outcome.status_code
    if status == 404:
        return NotFoundError(f"{where}: the file is no longer available (404)")
    if status == 401:
        return CredentialRejectedError(f"{where}: the bot token was rejected (401)")
    if status == 429:
        retry_after = outcome.headers.get("retry-after", "")
        return RateLimitedError(
            f"{where}: rate limited (429)", retry_after=float(retry_after) if retry_after.isdigit() else None
        )
    if status >= 500:
        return RetryableError(f"{where}: Telegram failed (HTTP {status})")
    return PermanentError(f"{where}: refused (HTTP {status})")


@asynccontextmanager
async def open_download(http: httpx.AsyncClient, base_url: str, token: str, file_id: str) -> AsyncIterator[FileStream]:
    """Stream one file from Telegram: getFile, then the file itself in bounded chunks. The size is what
    the file server says (Content-Length), else getFile's file_size."""
    file = await get_file(TelegramBotClient(base_url, token, http), file_id)
    path = quote(download_path(file.file_path, token), safe="/")
    # identity: a compressed answer would make Content-Length disagree with the bytes we pass on.
    request = http.build_request(
        "GET", f"{base_url.rstrip('/')}/file/bot{token}/{path}", headers={"Accept-Encoding": "identity"}
    )
    async with open_stream(http, request, _download_failure) as response:
        size = content_length(response)
        yield FileStream(
            size=file.file_size if size is None else size,
            mime_type=served_mime_type(response),
            chunks=response_chunks(response, DOWNLOAD_CHUNK_BYTES, _download_failure),
        )


# ---------------------------------------------------------------------------------------------------------
# Upload: a manager's file, from Kommo's attachment URL to the client (Kommo -> Telegram).
#
# A file parameter takes a file_id, an HTTP URL that Telegram fetches itself, or a multipart upload
# (reference §1). When Telegram can fetch the file (small enough, a type it fetches, a host it can reach)
# the bridge passes Kommo's URL and moves no bytes at all. Otherwise it streams: the download from Kommo
# feeds a multipart/form-data body chunk by chunk, so memory stays bounded whatever the file's size. A URL
# Telegram refuses to fetch falls back to the upload.

# Telegram recompresses photos and takes at most 10 MB of them, whatever the Bot API server.
PHOTO_UPLOAD_LIMIT: Final = 10 * MB
# What Telegram fetches from an HTTP URL (reference §1): ~5 MB photos, 20 MB anything else.
PHOTO_URL_LIMIT: Final = 5 * MB
URL_LIMIT: Final = 20 * MB
CAPTION_LIMIT: Final = 1024
TEXT_LIMIT: Final = 4096
# A caption too long for Telegram follows its file as text; a refusal of that text to wait out is waited
# out this many times (the file is already out, so the message as a whole cannot be retried).
FOLLOW_UP_ATTEMPTS: Final = 3
FOLLOW_UP_PAUSE_S: Final = 1.0
FOLLOW_UP_MAX_PAUSE_S: Final = 10.0
# sendDocument fetches only GIF, PDF and ZIP by URL; sendSticker only WEBP (Bot API, "Sending files").
_DOCUMENT_URL_TYPES: Final = frozenset({"image/gif", "application/pdf", "application/zip"})
_STICKER_URL_TYPES: Final = frozenset({"image/webp"})
# What each method plays as such; anything else goes as a document, which the client can still open.
_VOICE_TYPES: Final = frozenset(
    {"audio/ogg", "audio/opus", "audio/mpeg", "audio/mp3", "audio/mp4", "audio/x-m4a", "audio/m4a"}
)
_AUDIO_TYPES: Final = frozenset({"audio/mpeg", "audio/mp3", "audio/mp4", "audio/x-m4a", "audio/m4a"})
_STICKER_TYPES: Final = frozenset({"image/webp", "application/x-tgsticker", "video/webm"})
_EXTRA_TYPES: Final = {
    ".tgs": "application/x-tgsticker",
    ".webp": "image/webp",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
}
# Descriptions of a refused URL fetch (400): the upload may still work.
_URL_REFUSALS: Final = (
    "wrong file identifier/http url specified",
    "failed to get http url content",
    "wrong type of the web page content",
    "wrong remote file identifier",
    "webpage_curl_failed",
    "webpage_media_empty",
)


@dataclass(frozen=True)
class _Method:
    """A send method and the name of its file parameter."""

    name: str
    field: str
    url_limit: int
    url_types: frozenset[str] | None  # None: any type by URL
    captioned: bool = True


_PHOTO = _Method("sendPhoto", "photo", PHOTO_URL_LIMIT, None)
_VIDEO = _Method("sendVideo", "video", URL_LIMIT, None)
_DOCUMENT = _Method("sendDocument", "document", URL_LIMIT, _DOCUMENT_URL_TYPES)
_VOICE = _Method("sendVoice", "voice", URL_LIMIT, None)
_AUDIO = _Method("sendAudio", "audio", URL_LIMIT, None)
_STICKER = _Method("sendSticker", "sticker", URL_LIMIT, _STICKER_URL_TYPES, captioned=False)


def _form_value(value: Any) -> str:
    """A Bot API parameter as a form field: objects and arrays JSON-serialized, as Telegram reads them."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class FileUpload:
    """A file parameter sent as multipart/form-data, its bytes read from `chunks` as the body is sent.
    `size` (when known) becomes the request's Content-Length; else the body goes chunked."""

    field: str
    file_name: str
    mime_type: str
    size: int | None
    chunks: AsyncIterable[bytes]

    def encode(self, payload: Mapping[str, Any], boundary: str = "") -> tuple[dict[str, str], AsyncIterator[bytes]]:
        """The headers and streamed body of a call with `payload`'s parameters and this file."""
        fields = [(name, _form_value(value)) for name, value in payload.items() if value is not None]
        body = MultipartBody(fields, self.field, self.file_name, self.mime_type, boundary)
        headers = {"Content-Type": body.content_type}
        if self.size is not None:
            headers["Content-Length"] = str(body.content_length(self.size))
        return headers, body.stream(self.chunks)


def _utf16_length(text: str) -> int:
    """Telegram counts text limits in UTF-16 code units (an emoji outside the BMP counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def _split_text(text: str) -> list[str]:
    """Text longer than one message, in pieces of at most TEXT_LIMIT units, cut at line ends when possible."""
    pieces: list[str] = []
    rest = text
    while _utf16_length(rest) > TEXT_LIMIT:
        cut = TEXT_LIMIT
        while _utf16_length(rest[:cut]) > TEXT_LIMIT:
            cut -= 1
        newline = rest.rfind("\n", 0, cut)
        if newline > cut // 2:
            cut = newline + 1
        pieces.append(rest[:cut])
        rest = rest[cut:]
    if rest.strip():
        pieces.append(rest)
    return pieces


def _mime_of(name: str) -> str:
    return mime_type_of(name, _EXTRA_TYPES)


def outbound_file(content: content_pb2.Content) -> OutboundFile:
    """The file of a Media or Sticker content on its way to Telegram."""
    return OutboundFile.from_content(content, "telegram")


def guessed_mime_type(file: OutboundFile) -> str:
    """The type the hook gave, else the one the file name suggests (Telegram's sticker types included)."""
    return file.guessed_mime_type(_EXTRA_TYPES)


def _method_for(file: OutboundFile, mime_type: str) -> _Method:
    """The method that shows the file as what it is; a type the method would not play goes as a document."""
    if file.kind == "picture":
        return _PHOTO
    if file.kind == "video":
        return _VIDEO
    if file.kind == "voice":
        return _VOICE if not mime_type or mime_type in _VOICE_TYPES else _DOCUMENT
    if file.kind == "audio":
        return _AUDIO if not mime_type or mime_type in _AUDIO_TYPES else _DOCUMENT
    if file.kind == "sticker":
        if not mime_type or mime_type in _STICKER_TYPES:
            return _STICKER
        return _PHOTO if mime_type.startswith("image/") else _DOCUMENT
    return _DOCUMENT


def _fitted(method: _Method, size: int, upload_limit: int) -> _Method:
    """A photo over Telegram's photo limit still reaches the client: as a document, uncompressed."""
    if method is _PHOTO and size > PHOTO_UPLOAD_LIMIT and size <= upload_limit:
        return _DOCUMENT
    return method


def _limit_of(method: _Method, upload_limit: int) -> int:
    """Photos are capped lower than the Bot API server's upload limit, whatever the server."""
    return PHOTO_UPLOAD_LIMIT if method is _PHOTO else upload_limit


def _check_size(file: OutboundFile, method: _Method, size: int, upload_limit: int) -> None:
    limit = _limit_of(method, upload_limit)
    if size > limit:
        raise TooLargeError(
            f"telegram {method.name}: the file {file.file_name!r} is {size} bytes, over Telegram's limit of "
            f"{limit} bytes",
            reason=status_texts.FILE_TOO_LARGE,
            reason_args={"name": file.file_name, "size": str(size), "limit": str(limit), "platform": "telegram"},
        )


def upload_mime_type(file: OutboundFile, attachment: OpenAttachment) -> str:
    """The type an upload declares: the hook's, else the one Kommo serves, else the file name's."""
    return file.mime_type or attachment.served_mime_type or _mime_of(file.file_name) or "application/octet-stream"


def checked_chunks(
    attachment: OpenAttachment, file: OutboundFile, method: _Method, upload_limit: int
) -> AsyncIterator[bytes]:
    """The attachment's bytes, checked against the method's limit and the size Kommo announced."""
    limit = _limit_of(method, upload_limit)
    return attachment_chunks(attachment, file.file_name, limit=limit, platform="telegram")


def _is_url_refusal(error: PermanentError) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in _URL_REFUSALS)


class MediaSender:
    """Sends one canonical file (Media or Sticker) from Kommo to a Telegram chat.

    `upload_limit` is the Bot API server's (50 MB cloud, 2000 MB local; see `telegram_media_limits`).
    """

    def __init__(self, client: TelegramBotClient, http: httpx.AsyncClient, api_base_url: str, upload_limit: int):
        self._client = client
        self._http = http
        self._api_base_url = api_base_url
        self._upload_limit = upload_limit

    async def send(self, chat_id: str, content: content_pb2.Content, reply_to_message_id: int | None = None) -> int:
        """Send the file (caption included when it fits); returns the message_id of the file's message.
        A caption over Telegram's 1024 follows the file as text, whole: cutting it would change it."""
        file = outbound_file(content)
        caption = file.caption if _utf16_length(file.caption) <= CAPTION_LIMIT else ""
        message_id = await self._send_file(chat_id, file, caption, reply_to_message_id)
        if file.caption and not caption:
            await self.send_caption_after(chat_id, file)
        return message_id

    async def _send_file(self, chat_id: str, file: OutboundFile, caption: str, reply_to: int | None) -> int:
        mime_type = guessed_mime_type(file)
        method = _fitted(_method_for(file, mime_type), file.size, self._upload_limit)
        if file.size:
            _check_size(file, method, file.size, self._upload_limit)
        if self.by_url_possible(file, method, mime_type):
            payload = self._payload(chat_id, method, caption)
            payload[method.field] = file.url
            try:
                message_id = await self._client.send_file(method.name, payload, reply_to)
            except PermanentError as exc:
                if not _is_url_refusal(exc):
                    raise
                log.info("telegram refused to fetch the file by URL; uploading it", extra={"method": method.name})
            else:
                log.info("file sent by URL", extra={"method": method.name, "size": file.size})
                return message_id
        return await self._upload(chat_id, file, method, caption, reply_to)

    def by_url_possible(self, file: OutboundFile, method: _Method, mime_type: str) -> bool:
        """Telegram fetches it: a size known to be within its URL limit, a type it fetches, a host it reaches."""
        if not 0 < file.size <= method.url_limit:
            return False
        if method.url_types is not None and mime_type not in method.url_types:
            return False
        return platform_can_fetch(file.url, self._api_base_url)

    @staticmethod
    def _payload(chat_id: str, method: _Method, caption: str) -> dict[str, Any]:
        payload: dict[str, Any] = {"chat_id": chat_id}
        if caption and method.captioned:
            payload["caption"] = caption
        return payload

    async def _upload(
        self, chat_id: str, file: OutboundFile, method: _Method, caption: str, reply_to: int | None
    ) -> int:
        async with open_attachment(self._http, file.url, file.file_name) as attachment:
            size = attachment.size
            if size is not None:
                method = _fitted(method, size, self._upload_limit)
                _check_size(file, method, size, self._upload_limit)
            chunks = checked_chunks(attachment, file, method, self._upload_limit)
            upload = FileUpload(method.field, file.file_name, upload_mime_type(file, attachment), size, chunks)
            try:
                message_id = await self._client.send_file(
                    method.name, self._payload(chat_id, method, caption), reply_to, upload
                )
            except PermanentError as exc:
                if "request entity too large" in str(exc).lower():
                    limit = _limit_of(method, self._upload_limit)
                    args = {"name": file.file_name, "size": str(size or file.size), "limit": str(limit)}
                    raise TooLargeError(
                        str(exc), reason=status_texts.FILE_TOO_LARGE, reason_args={**args, "platform": "telegram"}
                    ) from None
                raise
        log.info("file uploaded", extra={"method": method.name, "size": size})
        return message_id

    async def send_caption_after(self, chat_id: str, file: OutboundFile) -> None:
        """The file is out, so a failure now must not make the whole message go again (the client would get
        the file twice): a refusal to wait out is waited out here, a few times, else it is reported."""
        for piece in _split_text(file.caption):
            for attempt in range(1, FOLLOW_UP_ATTEMPTS + 1):
                failure: BridgeError | None = None
                try:
                    await self._client.send_text(chat_id, piece)
                except RetryableError as exc:
                    failure = exc
                    if attempt < FOLLOW_UP_ATTEMPTS:
                        await asyncio.sleep(min(exc.retry_after or FOLLOW_UP_PAUSE_S, FOLLOW_UP_MAX_PAUSE_S))
                        continue
                except BridgeError as exc:
                    failure = exc
                if failure is None:
                    break
                raise PermanentError(
                    f"telegram: the file {file.file_name!r} was sent, but not its text (too long for a caption): "
                    f"{failure}",
                    reason=status_texts.PLATFORM_REFUSED,
                    reason_args={"platform": "telegram", "detail": f"the text after {file.file_name} ({failure})"},
                )
