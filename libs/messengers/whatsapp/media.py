"""WhatsApp media transfer (reference/messenger-apis.md §2, "Media download" and "Outbound"), both ways.

Download (a client's file, served to Kommo through the gateway's signed links): `GET /{media-id}` gives a
lookaside URL that lives 5 minutes, then that URL is fetched with the same Bearer token, streamed in
bounded chunks. Every open asks step 1 again, so an expired URL is never reused. Media ids of inbound
messages live 7 days; after that the file is gone (NotFoundError).

Upload (a manager's file from Kommo to the client): a message names its file by `link` (Meta fetches it)
or by the `id` of a file uploaded first (`POST /{phone-number-id}/media`, multipart, streamed here from
Kommo's URL). A link goes only when Meta can reach the URL and the size is known to be within the limit,
because Meta fetches it after answering 200 and a failure then is only a `failed` status (131053); every
other file is uploaded, so a refusal is known at once. Each kind is sent as what WhatsApp plays as such
(JPEG/PNG pictures, MP4/3GPP videos, AAC/AMR/MP3/M4A/OGG audio, OGG/Opus voice notes, WEBP stickers)
and within its size limit; anything else, or larger, goes as a document, which the client can still open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

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
from libs.media.attachments import chunks as attachment_chunks
from libs.media.attachments import open_attachment
from libs.media.outbound_files import OutboundFile, platform_can_fetch
from libs.media.streams import content_length, open_stream, response_chunks, served_mime_type
from libs.messengers.registry import FileStream, MediaLimits
from libs.messengers.whatsapp.cloud_api import CloudCredentials, GraphClient
from libs.messengers.whatsapp.graph_errors import PLATFORM, retry_after

MB: Final = 2**20
KB: Final = 2**10
# Size limits per kind (reference §2, to verify against Meta's current table).
IMAGE_LIMIT: Final = 5 * MB
VIDEO_LIMIT: Final = 16 * MB
AUDIO_LIMIT: Final = 16 * MB
DOCUMENT_LIMIT: Final = 100 * MB
STICKER_LIMIT: Final = 500 * KB  # animated; static stickers are smaller still (100 KB)
CAPTION_LIMIT: Final = 1024
DOWNLOAD_CHUNK_BYTES: Final = 64 * 1024

IMAGE_TYPES: Final = frozenset({"image/jpeg", "image/png"})
VIDEO_TYPES: Final = frozenset({"video/mp4", "video/3gpp"})
AUDIO_TYPES: Final = frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"})
VOICE_TYPES: Final = frozenset({"audio/ogg"})  # OGG/Opus: only these play as a voice note
STICKER_TYPES: Final = frozenset({"image/webp"})
_EXTRA_TYPES: Final = {".webp": "image/webp", ".opus": "audio/ogg", ".ogg": "audio/ogg", ".m4a": "audio/mp4"}


def whatsapp_media_limits() -> MediaLimits:
    """Clients send files up to 100 MB (documents), and so may the business."""
    return MediaLimits(download_bytes=DOCUMENT_LIMIT, upload_bytes=DOCUMENT_LIMIT)


# ---------------------------------------------------------------------------------------------------------
# Download: a client's file, streamed from Meta's lookaside host.


def _download_failure(outcome: httpx.Response | Exception) -> BridgeError:
    """The one mapping of a failed lookaside download; never names the URL."""
    where = "whatsapp media download"
    if isinstance(outcome, httpx.TimeoutException):
        return TimedOutError(f"{where}: timed out ({type(outcome).__name__})")
    if isinstance(outcome, Exception):
        return RetryableError(f"{where}: failed ({type(outcome).__name__})")
    status = outcome.status_code
    if status == 401:
        return CredentialRejectedError(f"{where}: the access token was rejected (401)")
    if status in (403, 404, 410):
        return NotFoundError(f"{where}: the file is no longer available (HTTP {status})")
    if status == 429:
        return RateLimitedError(f"{where}: rate limited (429)", retry_after=retry_after(outcome))
    if status >= 500:
        return RetryableError(f"{where}: Meta failed (HTTP {status})")
    return PermanentError(f"{where}: refused (HTTP {status})")


@asynccontextmanager
async def open_download(
    http: httpx.AsyncClient, base_url: str, secret: str, media_id: str
) -> AsyncIterator[FileStream]:
    """Stream one client file: its lookaside URL from Graph, then the bytes with the same Bearer token."""
    client = GraphClient(base_url, CloudCredentials.parse(secret), http)
    info = await client.media_info(media_id)
    if info.file_size is not None and info.file_size > DOCUMENT_LIMIT:
        raise TooLargeError(f"whatsapp media {media_id}: {info.file_size} bytes, over the {DOCUMENT_LIMIT} limit")
    # identity: a compressed answer would make Content-Length disagree with the bytes passed on.
    request = http.build_request("GET", info.url, headers={**client.auth_header, "Accept-Encoding": "identity"})
    async with open_stream(http, request, _download_failure, follow_redirects=True) as response:
        size = content_length(response)
        yield FileStream(
            size=info.file_size if size is None else size,
            mime_type=info.mime_type.split(";")[0].strip() or served_mime_type(response),
            chunks=response_chunks(response, DOWNLOAD_CHUNK_BYTES, _download_failure),
        )


# ---------------------------------------------------------------------------------------------------------
# Upload: a manager's file, from Kommo's attachment URL to the client.


def outbound_file(content: content_pb2.Content) -> OutboundFile:
    """The file of a Media or Sticker content on its way to WhatsApp."""
    return OutboundFile.from_content(content, PLATFORM)


def guessed_mime_type(file: OutboundFile) -> str:
    """The type the hook gave, else the one the file name suggests; bare and lower-case, as compared."""
    return file.guessed_mime_type(_EXTRA_TYPES).split(";")[0].strip().lower()


@dataclass(frozen=True)
class Shape:
    """How a file goes: the message type, its size limit, and whether it carries a caption / is a voice note."""

    type: str
    limit: int
    captioned: bool = True
    voice: bool = False


_IMAGE: Final = Shape("image", IMAGE_LIMIT)
_VIDEO: Final = Shape("video", VIDEO_LIMIT)
_AUDIO: Final = Shape("audio", AUDIO_LIMIT, captioned=False)
_VOICE: Final = Shape("audio", AUDIO_LIMIT, captioned=False, voice=True)
_STICKER: Final = Shape("sticker", STICKER_LIMIT, captioned=False)
_DOCUMENT: Final = Shape("document", DOCUMENT_LIMIT)


def shape_for(kind: str, mime_type: str, size: int) -> Shape:
    """The message type that shows the file as what it is; a type or size WhatsApp would not play that
    way goes as a document. `size` 0 means not known (yet)."""
    fits = (lambda shape: size <= shape.limit) if size else (lambda shape: True)
    if kind == "picture" and mime_type in IMAGE_TYPES and fits(_IMAGE):
        return _IMAGE
    if kind == "video" and mime_type in VIDEO_TYPES and fits(_VIDEO):
        return _VIDEO
    if kind == "voice" and mime_type in VOICE_TYPES and fits(_VOICE):
        return _VOICE
    if kind in ("voice", "audio") and mime_type in AUDIO_TYPES and fits(_AUDIO):
        return _AUDIO
    if kind == "sticker":
        if mime_type in STICKER_TYPES and fits(_STICKER):
            return _STICKER
        if mime_type in IMAGE_TYPES and fits(_IMAGE):
            return _IMAGE
    return _DOCUMENT


def _too_large(file: OutboundFile, size: int) -> TooLargeError:
    return TooLargeError(
        f"whatsapp: the file {file.file_name!r} is {size} bytes, over WhatsApp's limit of {DOCUMENT_LIMIT} bytes",
        reason=status_texts.FILE_TOO_LARGE,
        reason_args={"name": file.file_name, "size": str(size), "limit": str(DOCUMENT_LIMIT), "platform": PLATFORM},
    )


@dataclass(frozen=True)
class PreparedFile:
    """A file ready to be named in a message: its type and the media object (`{"link"}` or `{"id"}`,
    with caption and filename where the type takes them)."""

    shape: Shape
    media: dict[str, object]
    caption_sent: bool


class MediaPreparer:
    """Turns a canonical file into the media object of a message: by link when Meta can fetch it, else
    uploaded first (streamed from Kommo). `upload_limit` caps every file (WhatsApp's 100 MB by default)."""

    def __init__(self, client: GraphClient, http: httpx.AsyncClient, api_base_url: str, upload_limit: int) -> None:
        self._client = client
        self._http = http
        self._api_base_url = api_base_url
        self._upload_limit = min(upload_limit, DOCUMENT_LIMIT)

    async def prepare(self, file: OutboundFile) -> PreparedFile:
        mime_type = guessed_mime_type(file)
        if file.size > self._upload_limit:
            raise _too_large(file, file.size)
        shape = shape_for(file.kind, mime_type, file.size)
        if file.size and platform_can_fetch(file.url, self._api_base_url):
            return self._object(shape, file, {"link": file.url})
        async with open_attachment(self._http, file.url, file.file_name) as attachment:
            announced = attachment.size or file.size
            mime_type = mime_type or attachment.served_mime_type or "application/octet-stream"
            if announced > self._upload_limit:
                raise _too_large(file, announced)
            shape = shape_for(file.kind, mime_type, announced)
            limit = min(shape.limit, self._upload_limit)
            chunks = attachment_chunks(attachment, file.file_name, limit=limit, platform=PLATFORM)
            # The request's length only when Kommo's answer says it: the chunks are checked against that.
            media_id = await self._client.upload(file.file_name, mime_type, attachment.size, chunks)
        return self._object(shape, file, {"id": media_id})

    @staticmethod
    def _object(shape: Shape, file: OutboundFile, source: dict[str, object]) -> PreparedFile:
        media = dict(source)
        caption_sent = False
        if shape.captioned and file.caption and len(file.caption) <= CAPTION_LIMIT:
            media["caption"] = file.caption
            caption_sent = True
        if shape.type == "document":
            media["filename"] = file.file_name
        if shape.voice:
            media["voice"] = True
        return PreparedFile(shape, media, caption_sent)
