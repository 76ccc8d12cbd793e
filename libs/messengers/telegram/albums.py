"""A manager's album to Telegram as one album: sendMediaGroup (reference/messenger-apis.md §1).

Telegram groups photos with videos, documents only with documents and audio files only with audio files,
at most 10 to an album; voice notes, stickers and whatever is not a file never go in one. `album_runs`
cuts a manager's album into consecutive runs Telegram shows as one album each, in the manager's order
(a run of one item goes as a message of its own).

Each file goes the way `media.MediaSender` sends it alone, shown as the same kind: by URL where Telegram
fetches it (no bytes move), else uploaded; all the uploads of an album are parts of one multipart body
(`attach://<part>`), each file streamed from Kommo when the body reaches it. If Telegram refuses to fetch a
URL, the album goes again with every file uploaded. A caption over Telegram's 1024 follows the album as
text, as it follows a single file.

Limits: an item whose size, as the hook gives it, is over Telegram's limit is a run of its own, so it fails
alone with a clear status while the others still go as an album. A file whose size the hook does not give
and that turns out too large fails the album it is in (Telegram takes an album whole or not at all): every
item of it reports that file's name and size. A file gone from Kommo fails its album the same way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final

import httpx
from kommo_bridge.events.v1 import content_pb2

from libs import status_texts
from libs.errors import BadRequestError, BridgeError, PermanentError, TooLargeError
from libs.media.attachments import open_attachment
from libs.media.multipart import FilePart, MultipartFilesBody
from libs.media.outbound_files import OutboundFile
from libs.messengers.telegram.adapter import TelegramBotClient
from libs.messengers.telegram.media import (
    _AUDIO,
    _DOCUMENT,
    _PHOTO,
    _VIDEO,
    CAPTION_LIMIT,
    MediaSender,
    _check_size,
    _fitted,
    _form_value,
    _is_url_refusal,
    _limit_of,
    _Method,
    _method_for,
    _utf16_length,
    checked_chunks,
    guessed_mime_type,
    outbound_file,
    upload_mime_type,
)

log = logging.getLogger(__name__)

ALBUM_LIMIT: Final = 10
"""The most items Telegram puts in one album."""
# The InputMedia type of each method an album may hold, and what it may be grouped with.
_INPUT_MEDIA: Final = {_PHOTO.name: "photo", _VIDEO.name: "video", _DOCUMENT.name: "document", _AUDIO.name: "audio"}
_FAMILIES: Final = {"photo": "visual", "video": "visual", "document": "document", "audio": "audio"}


@dataclass(frozen=True)
class _Item:
    """An album item as it will go: the file and the method that shows it (its InputMedia type)."""

    file: OutboundFile
    method: _Method

    @property
    def input_type(self) -> str:
        return _INPUT_MEDIA[self.method.name]


def _album_item(content: content_pb2.Content, upload_limit: int) -> _Item | None:
    """How the item would be shown alone, if that can be in an album (and its size, if the hook gives
    it, is within Telegram's limit); None when it must go alone."""
    try:
        file = outbound_file(content)
    except BridgeError:
        return None  # not a file, or no file to send: it goes (or fails) alone
    method = _fitted(_method_for(file, guessed_mime_type(file)), file.size, upload_limit)
    if method.name not in _INPUT_MEDIA:
        return None
    if file.size > _limit_of(method, upload_limit):
        return None
    return _Item(file, method)


def album_runs(contents: Sequence[content_pb2.Content], upload_limit: int) -> list[list[int]]:
    """Consecutive runs of the items Telegram can show as one album each, in order, at most 10 long."""
    runs: list[list[int]] = []
    family = None
    for index, content in enumerate(contents):
        item = _album_item(content, upload_limit)
        joins = item is not None and _FAMILIES[item.input_type] == family and len(runs[-1]) < ALBUM_LIMIT
        if joins:
            runs[-1].append(index)
        else:
            runs.append([index])
        family = _FAMILIES[item.input_type] if item is not None else None
    return runs


@dataclass(frozen=True)
class AlbumUpload:
    """An album's uploaded files, each a part of one multipart body beside the call's parameters."""

    files: Sequence[FilePart]

    def encode(self, payload: Mapping[str, Any]) -> tuple[dict[str, str], AsyncIterator[bytes]]:
        fields = [(name, _form_value(value)) for name, value in payload.items() if value is not None]
        body = MultipartFilesBody(fields, self.files)
        headers = {"Content-Type": body.content_type}
        if body.content_length is not None:
            headers["Content-Length"] = str(body.content_length)
        return headers, body.stream()


class AlbumSender:
    """Sends one run of `album_runs` (2-10 items Telegram groups together) as one album."""

    def __init__(self, client: TelegramBotClient, http: httpx.AsyncClient, api_base_url: str, upload_limit: int):
        self._client = client
        self._http = http
        self._upload_limit = upload_limit
        self._single = MediaSender(client, http, api_base_url, upload_limit)

    async def send(
        self, chat_id: str, contents: Sequence[content_pb2.Content], reply_to_message_id: int | None = None
    ) -> list[int]:
        """Send the album; the message_id of each item, in order. All of it goes, or none."""
        items = [_album_item(content, self._upload_limit) for content in contents]
        checked = [item for item in items if item is not None]
        families = {_FAMILIES[item.input_type] for item in checked}
        if len(checked) != len(items) or not 2 <= len(checked) <= ALBUM_LIMIT or len(families) != 1:
            raise BadRequestError("telegram: these items cannot go as one album (see album_runs)")
        by_url = [self._single.by_url_possible(i.file, i.method, guessed_mime_type(i.file)) for i in checked]
        try:
            message_ids = await self._attempt(chat_id, checked, by_url, reply_to_message_id)
        except PermanentError as exc:
            if not any(by_url) or not _is_url_refusal(exc):
                raise
            log.info("telegram refused to fetch a file of the album by URL; uploading them all")
            message_ids = await self._attempt(chat_id, checked, [False] * len(checked), reply_to_message_id)
        for item in checked:
            if item.file.caption and _utf16_length(item.file.caption) > CAPTION_LIMIT:
                await self._single.send_caption_after(chat_id, item.file)
        return message_ids

    async def _attempt(
        self, chat_id: str, items: Sequence[_Item], by_url: Sequence[bool], reply_to: int | None
    ) -> list[int]:
        media: list[dict[str, Any]] = []
        parts: list[FilePart] = []
        async with AsyncExitStack() as stack:
            for index, (item, url) in enumerate(zip(items, by_url, strict=True)):
                entry: dict[str, Any] = {"type": item.input_type}
                if item.file.caption and _utf16_length(item.file.caption) <= CAPTION_LIMIT:
                    entry["caption"] = item.file.caption
                if url:
                    entry["media"] = item.file.url
                else:
                    part = await self._opened(stack, item, f"file{index}")
                    entry["media"] = f"attach://{part.field}"
                    parts.append(part)
                media.append(entry)
            upload = AlbumUpload(parts) if parts else None
            try:
                message_ids = await self._client.send_media_group(chat_id, media, reply_to, upload)
            except PermanentError as exc:
                if "request entity too large" in str(exc).lower() and parts:
                    raise self._too_large(items, parts) from None
                raise
        log.info("album sent", extra={"items": len(items), "uploaded": len(parts)})
        return message_ids

    async def _opened(self, stack: AsyncExitStack, item: _Item, field: str) -> FilePart:
        """The item's file opened at Kommo, to be streamed as part `field`; its bytes are read only when the
        body reaches it. Its size, once Kommo tells it, is checked as the hook's was."""
        file = item.file
        attachment = await stack.enter_async_context(open_attachment(self._http, file.url, file.file_name))
        if attachment.size is not None:
            # No switch to a document here (as a single photo gets): the album's other items are photos.
            _check_size(file, item.method, attachment.size, self._upload_limit)
        chunks = checked_chunks(attachment, file, item.method, self._upload_limit)
        return FilePart(field, file.file_name, upload_mime_type(file, attachment), attachment.size, chunks)

    def _too_large(self, items: Sequence[_Item], parts: Sequence[FilePart]) -> TooLargeError:
        """Telegram refused the request as too large: name the largest upload (the likely culprit)."""
        largest = max(parts, key=lambda part: part.size or 0)
        item = next(i for i in items if i.file.file_name == largest.file_name)
        limit = _limit_of(item.method, self._upload_limit)
        args = {"name": largest.file_name, "size": str(largest.size or item.file.size), "limit": str(limit)}
        return TooLargeError(
            f"telegram sendMediaGroup: Request Entity Too Large ({largest.file_name!r})",
            reason=status_texts.FILE_TOO_LARGE,
            reason_args={**args, "platform": "telegram"},
        )
