"""Bots sending files through the Telegram emulator: sendPhoto, sendVideo, sendDocument, sendVoice,
sendAudio and sendSticker (reference/messenger-apis.md §1).

The file parameter takes what Telegram takes: a file_id the bot already has (one it sent, or one a client
sent it), an HTTP URL the emulator fetches as Telegram does (~5 MB for photos, 20 MB otherwise; documents
only as GIF, PDF or ZIP; stickers only as WEBP), or a multipart/form-data upload. An upload is parsed as
it streams in (python-multipart), each file written to disk and hashed on the way, so a 2 GB upload costs
no memory; a file over the limit (photos 10 MB, other files 50 MB; 2000 MB for other files when playing a
local Bot API server) is refused as Telegram refuses it: 413 "Request Entity Too Large".

Every accepted file is kept in the bot's file store (`state.files`, so its file_id works again and
getFile serves it) and recorded (`GET /_emulator/uploads`): method, caption, file name, size, MIME type,
sha256 of the bytes, and how it came (`upload`, `url` or `file_id`). The answer is the Message Telegram
would return, with the file object of the kind the method shows.
"""

from __future__ import annotations

import hashlib
import mimetypes
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import unquote, urlsplit

import httpx
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.emulation.middleware import CONTROL_PREFIX
from libs.emulation.multipart_spool import FORM_ALLOWANCE, MultipartSpool, SpooledFile

if TYPE_CHECKING:
    from collections.abc import Callable

    from libs.messengers.telegram.emulator_files import FileStore, StoredFile
    from libs.messengers.telegram.emulator_state import Bot, Chat, TelegramState

MB: Final = 2**20
PHOTO_LIMIT: Final = 10 * MB
UPLOAD_LIMIT: Final = 50 * MB
LOCAL_UPLOAD_LIMIT: Final = 2000 * MB
PHOTO_URL_LIMIT: Final = 5 * MB
URL_LIMIT: Final = 20 * MB
CAPTION_LIMIT: Final = 1024
ALBUM_MAX_ITEMS: Final = 10
_FETCH_TIMEOUT_S: Final = 30.0
_FETCH_CHUNK_BYTES: Final = 256 * 1024
_DOCUMENT_URL_TYPES: Final = frozenset({"image/gif", "application/pdf", "application/zip"})
_VOICE_TYPES: Final = frozenset({"audio/ogg", "audio/opus", "audio/mpeg", "audio/mp3", "audio/mp4", "audio/x-m4a"})
_STICKER_TYPES: Final = {"image/webp": "static", "application/x-tgsticker": "animated", "video/webm": "video"}
_EXTRA_TYPES: Final = {
    ".tgs": "application/x-tgsticker",
    ".webp": "image/webp",
    ".m4a": "audio/mp4",
    ".opus": "audio/ogg",
}
_WRONG_FILE: Final = "Bad Request: wrong file identifier/HTTP URL specified"
_FETCH_FAILED: Final = "Bad Request: failed to get HTTP URL content"
_WRONG_TYPE: Final = "Bad Request: wrong type of the web page content"
_TOO_LARGE: Final = "Request Entity Too Large"


class UploadRefused(Exception):
    """A send method's refusal, answered in Telegram's envelope with HTTP status = `code`."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


@dataclass(frozen=True)
class MediaMethod:
    name: str
    field: str  # the file parameter and the Message field of what it shows
    folder_kind: str  # the file store's kind (its folder)
    url_limit: int
    url_types: frozenset[str] | None = None  # None: any type by URL
    captioned: bool = True


MEDIA_METHODS: Final = {
    m.name.lower(): m
    for m in (
        MediaMethod("sendPhoto", "photo", "photo", PHOTO_URL_LIMIT),
        MediaMethod("sendVideo", "video", "video", URL_LIMIT),
        MediaMethod("sendDocument", "document", "document", URL_LIMIT, _DOCUMENT_URL_TYPES),
        MediaMethod("sendVoice", "voice", "voice", URL_LIMIT),
        MediaMethod("sendAudio", "audio", "audio", URL_LIMIT),
        MediaMethod("sendSticker", "sticker", "sticker", URL_LIMIT, frozenset({"image/webp"}), captioned=False),
    )
}


def upload_limit(method: str, files: FileStore) -> int:
    """The largest file `method` takes by upload: photos 10 MB on any server, others 50 MB (2000 MB local)."""
    if method.lower() == "sendphoto":
        return PHOTO_LIMIT
    return LOCAL_UPLOAD_LIMIT if files.local_api else UPLOAD_LIMIT


# ---------------------------------------------------------------------------------------------------------
# Multipart, parsed as it streams in


@dataclass
class UploadedFile(SpooledFile):
    """One file part of a multipart request, on disk."""

    kept: bool = False  # registered in the file store (else removed after the call)


async def read_multipart(request: Request, files: FileStore) -> dict[str, str | UploadedFile]:
    """The fields of a multipart/form-data call, files spooled to disk as they arrive. Refuses a file over
    the method's limit with 413, before reading on when the request's Content-Length already says so."""
    method = request.path_params.get("method", "")
    limit = upload_limit(method, files)
    # sendMediaGroup takes up to 10 files, each within the limit.
    most_files = ALBUM_MAX_ITEMS if method.lower() == "sendmediagroup" else 1
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit * most_files + FORM_ALLOWANCE:
        raise UploadRefused(413, _TOO_LARGE)
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadRefused(400, "Bad Request: multipart boundary is missing")
    reader = MultipartSpool(
        files.spool_path,
        file_limit=limit,
        file_too_large=lambda: UploadRefused(413, _TOO_LARGE),
        field_too_large=lambda: UploadRefused(413, _TOO_LARGE),
        new_file=UploadedFile,
    )
    try:
        await reader.read(request, boundary)
    except MultipartParseError:
        raise UploadRefused(400, "Bad Request: can't parse the multipart request body") from None
    except ClientDisconnect:  # the sender gave up mid-upload: nobody reads the answer, nothing is kept
        raise UploadRefused(400, "Bad Request: the request body ended early") from None
    return reader.fields


# ---------------------------------------------------------------------------------------------------------
# What was sent


@dataclass(frozen=True)
class UploadRecord:
    """A file a bot sent: how it came and exactly what it was."""

    bot_id: int
    chat_id: int
    message_id: int
    method: str
    shown_as: str  # the Message field: photo, document, voice, ...
    via: str  # upload, url or file_id
    caption: str
    file_name: str
    file_size: int
    mime_type: str
    sha256: str
    url: str
    at: float
    media_group_id: str = ""  # sent in an album (sendMediaGroup): the album's id

    def to_json(self) -> dict[str, Any]:
        return {
            "bot_id": self.bot_id,
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "method": self.method,
            "shown_as": self.shown_as,
            "via": self.via,
            "caption": self.caption,
            "file_name": self.file_name,
            "file_size": self.file_size,
            "mime_type": self.mime_type,
            "sha256": self.sha256,
            "url": self.url,
            "at": self.at,
            "media_group_id": self.media_group_id,
        }


@dataclass
class UploadLog:
    """Every file bots sent, in order."""

    records: list[UploadRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: UploadRecord) -> None:
        with self._lock:
            self.records.append(record)

    def find(self, bot_id: int | None = None, chat_id: int | None = None) -> list[UploadRecord]:
        with self._lock:
            return [
                r
                for r in self.records
                if (bot_id is None or r.bot_id == bot_id) and (chat_id is None or r.chat_id == chat_id)
            ]

    def clear(self) -> None:
        with self._lock:
            self.records.clear()


# ---------------------------------------------------------------------------------------------------------
# The send methods


class Params(Protocol):
    """The emulator's typed reads of a call's parameters (`emulator._Params`)."""

    def raw(self, name: str) -> Any: ...

    def str_(self, name: str) -> str | None: ...

    def int_(self, name: str) -> int | None: ...


@dataclass(frozen=True)
class IncomingFile:
    """The file a call names, on disk, however it came."""

    path: Path
    file_name: str
    mime_type: str
    size: int
    sha256: str
    via: str
    url: str = ""
    stored: StoredFile | None = None


def _mime_of(name: str) -> str:
    return _EXTRA_TYPES.get(PurePosixPath(name).suffix.lower()) or mimetypes.guess_type(name)[0] or ""


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def _fetch(url: str, method: MediaMethod, files: FileStore) -> IncomingFile:
    """Fetch a URL the way Telegram does: a bounded download, refused with Telegram's words."""
    path = files.spool_path()
    digest = hashlib.sha256()
    size = 0
    try:
        async with (
            httpx.AsyncClient(timeout=_FETCH_TIMEOUT_S, follow_redirects=True) as http,
            http.stream("GET", url) as response,
        ):
            if not response.is_success:
                raise UploadRefused(400, _FETCH_FAILED)
            mime_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            _, options = parse_options_header(response.headers.get("content-disposition", ""))
            name = (
                options.get(b"filename", b"").decode("utf-8", "replace")
                or PurePosixPath(unquote(urlsplit(url).path)).name
            )
            if method.url_types is not None and (mime_type or _mime_of(name)) not in method.url_types:
                raise UploadRefused(400, _WRONG_TYPE)
            with path.open("wb") as handle:
                async for chunk in response.aiter_bytes(_FETCH_CHUNK_BYTES):
                    size += len(chunk)
                    if size > method.url_limit:
                        raise UploadRefused(400, _FETCH_FAILED)
                    digest.update(chunk)
                    handle.write(chunk)
    except httpx.HTTPError:
        path.unlink(missing_ok=True)
        raise UploadRefused(400, _FETCH_FAILED) from None
    except UploadRefused:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise UploadRefused(400, _FETCH_FAILED)
    mime_type = mime_type if mime_type not in ("", "application/octet-stream") else _mime_of(name) or mime_type
    return IncomingFile(path, name, mime_type or "application/octet-stream", size, digest.hexdigest(), "url", url)


async def incoming_file(method: MediaMethod, value: Any, bot: Bot, params: Params, files: FileStore) -> IncomingFile:
    """The file a file parameter's `value` names (an upload, `attach://<part>`, a URL or a file_id), on disk."""
    if isinstance(value, str) and value.startswith("attach://"):
        value = params.raw(value.removeprefix("attach://"))
    if isinstance(value, UploadedFile):
        if value.size == 0:
            raise UploadRefused(400, "Bad Request: file must be non-empty")
        mime_type = value.content_type if value.content_type not in ("", "application/octet-stream") else ""
        mime_type = mime_type or _mime_of(value.file_name) or "application/octet-stream"
        return IncomingFile(value.path, value.file_name, mime_type, value.size, value.sha256, "upload")
    if not isinstance(value, str) or not value:
        raise UploadRefused(400, f"Bad Request: there is no {method.field} in the request")
    if value.startswith(("http://", "https://")):
        return await _fetch(value, method, files)
    stored = files.lookup(bot, value)
    if stored is None:
        raise UploadRefused(400, _WRONG_FILE)
    name = stored.file_name or stored.file_path.rpartition("/")[2]
    return IncomingFile(stored.disk_path, name, stored.mime_type, stored.size, stored.sha256, "file_id", stored=stored)


def check_file(method: MediaMethod, file: IncomingFile, files: FileStore) -> str:
    """What the message shows the file as (the method's kind, or a document), after Telegram's checks."""
    if file.via == "upload" and file.size > upload_limit(method.name, files):
        raise UploadRefused(413, _TOO_LARGE)
    if method.field == "photo" and file.size > PHOTO_LIMIT:
        # A larger file's file_id sent as a photo. ASSUMPTION: Telegram's words for it are not documented.
        raise UploadRefused(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
    if method.field == "sticker" and file.mime_type not in _STICKER_TYPES:
        # ASSUMPTION: Telegram's exact words for a sticker file of another type are not documented.
        raise UploadRefused(400, "Bad Request: wrong file type of the sticker")
    if method.field == "voice" and file.mime_type not in _VOICE_TYPES:
        return "document"  # "Other formats may be sent as Audio or Document": Telegram shows a file
    return method.field


def file_object(shown_as: str, stored: StoredFile, file: IncomingFile, params: Params) -> Any:
    """The Message field for the file, shaped as Telegram's (PhotoSize[], Document, Video, ...)."""
    ids = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}
    if shown_as == "photo":
        # Telegram keeps the photo in several sizes, smallest first, the largest about the original.
        return [
            {**ids, "file_id": f"{stored.file_id}_{side}", "width": side, "height": side * 3 // 4,
             "file_size": max(1, file.size * side // 1280)}
            for side in (90, 320, 800)
        ] + [{**ids, "width": 1280, "height": 960, "file_size": file.size}]  # fmt: skip
    described = {**ids, "file_size": file.size, "mime_type": file.mime_type}
    if shown_as == "sticker":
        flavour = _STICKER_TYPES[file.mime_type]
        return {
            **ids,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": flavour == "animated",
            "is_video": flavour == "video",
            "file_size": file.size,
        }
    duration = params.int_("duration") or 0
    if shown_as == "voice":
        return {**described, "duration": duration}
    if shown_as == "video":
        width, height = params.int_("width") or 1280, params.int_("height") or 720
        return {**described, "file_name": file.file_name, "width": width, "height": height, "duration": duration}
    if shown_as == "audio":
        audio = {**described, "file_name": file.file_name, "duration": duration}
        for key in ("performer", "title"):
            value = params.str_(key)
            if value:
                audio[key] = value
        return audio
    return {**described, "file_name": file.file_name}


async def send_media(
    state: TelegramState,
    bot: Bot,
    chat: Chat,
    method_name: str,
    params: Params,
    reply_to: dict[str, Any] | None,
    admit: Callable[[], None],
) -> dict[str, Any]:
    """One send method: the checks Telegram makes, then the Message it answers with."""
    method = MEDIA_METHODS[method_name.lower()]
    caption = (params.str_("caption") or "") if method.captioned else ""
    if _utf16_length(caption) > CAPTION_LIMIT:
        raise UploadRefused(400, "Bad Request: message caption is too long")
    files = state.files
    file = await incoming_file(method, params.raw(method.field), bot, params, files)
    try:
        shown_as = check_file(method, file, files)
        admit()
    except Exception:
        if file.via == "url":  # an upload is removed by the caller, a file_id's file stays
            file.path.unlink(missing_ok=True)
        raise
    sent = SentFile(method, file, shown_as, params.raw(method.field), params, caption)
    return sent_file_message(state, bot, chat, method.name, sent, reply_to)


@dataclass(frozen=True)
class SentFile:
    """A checked file of a send call: how it is shown, the upload it came in (if any), the parameters
    that describe it (duration, width, ...), and its caption."""

    method: MediaMethod
    file: IncomingFile
    shown_as: str
    upload: Any
    details: Params
    caption: str


def sent_file_message(
    state: TelegramState,
    bot: Bot,
    chat: Chat,
    method_name: str,
    sent: SentFile,
    reply_to: dict[str, Any] | None,
    media_group_id: str = "",
) -> dict[str, Any]:
    """The Message that shows a sent file: the file kept in the bot's store (so its file_id works again)
    and the send recorded."""
    file = sent.file
    stored = file.stored or state.files.keep(
        bot, sent.method.folder_kind, file.mime_type, file.file_name, file.path, file.sha256
    )
    if isinstance(sent.upload, UploadedFile):
        sent.upload.kept = True
    content: dict[str, Any] = {sent.shown_as: file_object(sent.shown_as, stored, file, sent.details)}
    if sent.caption:
        content["caption"] = sent.caption
    if media_group_id:
        content["media_group_id"] = media_group_id
    message = state.bot_message(bot, chat, method_name, content, reply_to)
    state.uploads.add(
        UploadRecord(
            bot_id=bot.id,
            chat_id=chat.id,
            message_id=message["message_id"],
            method=method_name,
            shown_as=sent.shown_as,
            via=file.via,
            caption=sent.caption,
            file_name=file.file_name,
            file_size=file.size,
            mime_type=file.mime_type,
            sha256=file.sha256,
            url=file.url,
            at=time.time(),
            media_group_id=media_group_id,
        )
    )
    return message


# ---------------------------------------------------------------------------------------------------------
# Control routes


def upload_routes(state: TelegramState) -> list[Route]:
    """`GET /_emulator/uploads?bot_id=&chat_id=` (and DELETE to forget them)."""

    async def uploads(request: Request) -> Response:
        if request.method == "DELETE":
            state.uploads.clear()
            return JSONResponse({"cleared": True})
        try:
            bot_id = _query_int(request, "bot_id")
            chat_id = _query_int(request, "chat_id")
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"uploads": [r.to_json() for r in state.uploads.find(bot_id, chat_id)]})

    return [Route(CONTROL_PREFIX + "uploads", uploads, methods=["GET", "DELETE"])]


def _query_int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name, "")
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
