"""Bots sending albums through the Telegram emulator: sendMediaGroup (reference/messenger-apis.md §1).

As the official Bot API server (telegram-bot-api `Client::get_input_media`) and TDLib's album checks do:
`media` is a JSON array of InputMedia of type photo, video, document or audio (an animation "can't be used
in sendMediaGroup", anything else "is unsupported"), each naming its file as the single send methods do
(a file_id, a URL Telegram fetches, or `attach://<part>` of a multipart upload, "media not found" when
that part is missing); an album holds 1-10 items ("there are no messages to send", "too many messages to
send as an album"), documents only with documents and audio files only with audio files ("document can't
be mixed with other media types"). One item is sent as a message of its own, outside any album. A file
Telegram fails to fetch by URL is reported with its position ("failed to send message #2 with the error
message ..."); other file checks and the size limits are those of `emulator_uploads` (413 for an upload
over the limit). A refused album sends and keeps nothing.

Each item is recorded as an upload (`GET /_emulator/uploads`) with the album's `media_group_id`; the
answer is the array of Messages, which share that `media_group_id` when there are two or more.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Final

from libs.messengers.telegram.emulator_uploads import (
    ALBUM_MAX_ITEMS,
    CAPTION_LIMIT,
    MEDIA_METHODS,
    IncomingFile,
    MediaMethod,
    Params,
    SentFile,
    UploadRefused,
    check_file,
    incoming_file,
    sent_file_message,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from libs.messengers.telegram.emulator_state import Bot, Chat, TelegramState

# The send method whose file checks each InputMedia type meets.
_ALBUM_METHODS: Final = {
    "photo": MEDIA_METHODS["sendphoto"],
    "video": MEDIA_METHODS["sendvideo"],
    "document": MEDIA_METHODS["senddocument"],
    "audio": MEDIA_METHODS["sendaudio"],
}
# Types TDLib keeps apart from the rest of an album (is_homogenous_media_group_content).
_ALONE_TYPES: Final = ("document", "audio")
_BAD_REQUEST: Final = "Bad Request: "
_media_group_ids = itertools.count(13_000_000_000_000_001)


class _ItemParams:
    """An InputMedia object read like a call's parameters (duration, width, performer, ... of its file)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def raw(self, name: str) -> Any:
        value = self._values.get(name)
        return None if value is None or value == "" else value

    def str_(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None or isinstance(value, str):
            return value
        raise UploadRefused(400, f'Bad Request: can\'t parse InputMedia: field "{name}" must be of type String')

    def int_(self, name: str) -> int | None:
        value = self.raw(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise UploadRefused(400, f'Bad Request: can\'t parse InputMedia: field "{name}" must be of type Number')


def _input_media(value: Any, params: Params) -> tuple[MediaMethod, _ItemParams, str]:
    """One InputMedia, checked as the official server parses it: its method, fields and caption."""
    if not isinstance(value, dict):
        raise UploadRefused(400, "Bad Request: can't parse InputMedia: expected an Object")
    item = _ItemParams(value)
    caption = item.str_("caption") or ""
    kind = item.str_("type")
    if kind is None:
        raise UploadRefused(400, 'Bad Request: can\'t parse InputMedia: field "type" must be of type String')
    media = item.raw("media")
    if not isinstance(media, str) or (media.startswith("attach://") and params.raw(media[9:]) is None):
        raise UploadRefused(400, "Bad Request: can't parse InputMedia: media not found")
    if kind == "animation":
        words = f'type "{kind}" can\'t be used in sendMediaGroup'
        raise UploadRefused(400, f"Bad Request: can't parse InputMedia: {words}")
    method = _ALBUM_METHODS.get(kind)
    if method is None:
        raise UploadRefused(400, f'Bad Request: can\'t parse InputMedia: type "{kind}" is unsupported')
    if len(caption.encode("utf-16-le")) // 2 > CAPTION_LIMIT:
        raise UploadRefused(400, "Bad Request: message caption is too long")
    return method, item, caption


def _check_album(kinds: list[str]) -> None:
    if not kinds:
        raise UploadRefused(400, "Bad Request: there are no messages to send")
    if len(kinds) > ALBUM_MAX_ITEMS:
        raise UploadRefused(400, "Bad Request: too many messages to send as an album")
    apart = next((kind for kind in kinds if kind in _ALONE_TYPES), None)
    if apart is not None and any(kind != apart for kind in kinds):
        raise UploadRefused(400, f"Bad Request: {apart} can't be mixed with other media types")


def _at_position(position: int, refusal: UploadRefused) -> UploadRefused:
    """A file Telegram could not get, named by its place in the album, with TDLib's words for it."""
    words = refusal.description.removeprefix(_BAD_REQUEST)
    words = words[:1].upper() + words[1:]
    return UploadRefused(400, f'Bad Request: failed to send message #{position} with the error message "{words}"')


async def send_media_group(
    state: TelegramState,
    bot: Bot,
    chat: Chat,
    params: Params,
    media: Any,
    reply_to: dict[str, Any] | None,
    admit: Callable[[], None],
) -> list[dict[str, Any]]:
    """sendMediaGroup's checks, then the Messages it answers with (`media`: the parsed `media` array)."""
    if not isinstance(media, list):
        raise UploadRefused(400, "Bad Request: expected an Array of InputMedia")
    parsed = [_input_media(value, params) for value in media]
    _check_album([method.field for method, _, _ in parsed])
    files = state.files
    incoming: list[tuple[IncomingFile, str]] = []
    try:
        for position, (method, item, _) in enumerate(parsed, start=1):
            try:
                file = await incoming_file(method, item.raw("media"), bot, params, files)
            except UploadRefused as refusal:
                if isinstance(item.raw("media"), str) and item.raw("media").startswith(("http://", "https://")):
                    raise _at_position(position, refusal) from None
                raise
            incoming.append((file, check_file(method, file, files)))
        admit()
    except Exception:
        for file, _ in incoming:
            if file.via == "url":  # an upload is removed by the caller, a file_id's file stays
                file.path.unlink(missing_ok=True)
        raise
    group_id = str(next(_media_group_ids)) if len(parsed) > 1 else ""
    messages = []
    for (method, item, caption), (file, shown_as) in zip(parsed, incoming, strict=True):
        named = str(item.raw("media"))
        upload = params.raw(named.removeprefix("attach://")) if named.startswith("attach://") else None
        sent = SentFile(method, file, shown_as, upload, item, caption)
        messages.append(sent_file_message(state, bot, chat, "sendMediaGroup", sent, reply_to, group_id))
    return messages
