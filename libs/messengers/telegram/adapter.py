"""The Telegram adapter: both directions of the translation between the Bot API and canonical events.

Inbound (used by the gateway): `verify_webhook` checks the secret Telegram echoes on every webhook POST,
`parse_update` turns an Update into an `InboundMessage` (or None for updates the bridge doesn't carry yet).
Outbound (used by messenger_sender): `TelegramBotClient` calls the Bot API and maps every failure into
`libs.errors`; `TelegramAdapter` offers both to `libs.messengers.registry`. The bot token is part of every
Bot API URL, so no error, log line or repr made here may contain a URL: the token would leak with it.
"""

from __future__ import annotations

import hmac
import json
import math
import mimetypes
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs import status_texts
from libs.errors import (
    AuthError,
    BadRequestError,
    BridgeError,
    CredentialRejectedError,
    MissingCredentialError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RecipientUnavailableError,
    RetryableError,
    TimedOutError,
)
from libs.messengers.payload_reader import PayloadReader, type_name
from libs.messengers.registry import ChannelIdentity, FileStream, MediaLimits, WebhookHealth
from libs.messengers.telegram import live
from libs.messengers.telegram.buttons import callback_update, inline_keyboard, keyboard_text, webhook_answer
from libs.messengers.telegram.live import quoted, reaction_update
from libs.messengers.telegram.reactions import telegram_reaction
from libs.observability.metrics import count_rate_limited
from libs.secret_names import MESSENGER_WEBHOOK_SECRET

if TYPE_CHECKING:
    from libs.config import Settings

WEBHOOK_AUTH_HEADER = "X-Telegram-Bot-Api-Secret-Token"

# ---------------------------------------------------------------------------------------------------------
# Inbound: webhook verification


def verify_webhook(headers: Mapping[str, str], expected_secret: str) -> None:
    """Telegram authenticates webhooks only by echoing the `secret_token` given to setWebhook, so a
    constant-time comparison of that header is the whole check. An empty expected secret never passes:
    it would make every request look authentic."""
    wanted = WEBHOOK_AUTH_HEADER.lower()
    received = next((value for key, value in headers.items() if key.lower() == wanted), None)
    if not received:
        raise MissingCredentialError(f"telegram webhook: header {WEBHOOK_AUTH_HEADER} is missing")
    if not expected_secret:
        raise AuthError("telegram webhook: no webhook secret is configured for this connection")
    if not hmac.compare_digest(received.encode("utf-8"), expected_secret.encode("utf-8")):
        raise AuthError(f"telegram webhook: header {WEBHOOK_AUTH_HEADER} does not match the connection's secret")


# ---------------------------------------------------------------------------------------------------------
# Inbound: Update -> InboundMessage

# Message fields that describe the envelope rather than the content; whatever else a message carries is its
# content, which names unsupported kinds (poll, dice, game, ...) in the placeholder text.
_ENVELOPE_FIELDS = frozenset(
    {
        "message_id",
        "message_thread_id",
        "direct_messages_topic",
        "from",
        "sender_chat",
        "sender_boost_count",
        "sender_business_bot",
        "date",
        "business_connection_id",
        "chat",
        "forward_origin",
        "is_topic_message",
        "is_automatic_forward",
        "reply_to_message",
        "external_reply",
        "quote",
        "reply_to_story",
        "reply_to_checklist_task_id",
        "via_bot",
        "edit_date",
        "has_protected_content",
        "is_from_offline",
        "is_paid_post",
        "media_group_id",
        "author_signature",
        "paid_star_count",
        "entities",
        "caption",
        "caption_entities",
        "show_caption_above_media",
        "has_media_spoiler",
        "link_preview_options",
        "effect_id",
        "reply_markup",
        "suggested_post_info",
    }
)


class _Reader(PayloadReader):
    """Typed reads from one update's JSON, naming the exact field of anything malformed."""

    def __init__(self, update_id: int) -> None:
        super().__init__(f"telegram update {update_id}")
        self.update_id = update_id


def parse_update(body: bytes, connection_id: str) -> events_pb2.InboundMessage | None:
    """Translate one webhook body. Returns None for updates the bridge does not carry (yet): anything but a
    message, an edit, a reaction or a block / unblock (`my_chat_member`) in a private chat. Raises
    BadRequestError for input that is not a Telegram Update."""
    try:
        update: object = json.loads(body)
    except ValueError as exc:
        raise BadRequestError(f"telegram update: body is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(update, dict):
        raise BadRequestError(f"telegram update: body must be a JSON object, got {type_name(update)}")
    update_id = update.get("update_id")
    if isinstance(update_id, bool) or not isinstance(update_id, int):
        raise BadRequestError(f"telegram update: update_id must be an integer, got {type_name(update_id)}")

    read = _Reader(update_id)
    if "my_chat_member" in update:
        return _membership(read, update, body, connection_id)
    if "message_reaction" in update:
        return reaction_update(read, update, body, connection_id)
    if "callback_query" in update:  # a tap on a button of the bot's message
        return callback_update(read, update, body, connection_id, update_id)
    # An edit carries the whole message again, same message_id, new content (reference §1).
    kind = next((key for key in ("message", "edited_message") if key in update), None)
    if kind is None:
        return None
    message = read.obj(update, kind, "update")
    chat = read.obj(message, "chat", "message")
    if read.str_(chat, "type", "message.chat", required=True) != "private":
        return None
    chat_id = read.int_(chat, "id", "message.chat")
    message_id = read.int_(message, "message_id", "message")
    date = read.int_(message, "date", "message")
    sender = read.obj(message, "from", "message")
    sender_id = read.int_(sender, "id", "message.from")
    profile = _profile(read, sender, "message.from")
    content = _content(read, message)
    shared = message.get("contact")
    if content.HasField("contact") and isinstance(shared, dict) and shared.get("user_id") == sender_id:
        # The client shared their own contact (a "share my phone" button): now we know their number.
        profile.phone = content.contact.phone

    event = events_pb2.InboundMessage(
        # update_id is unique per update, so each edit of a message is an event of its own.
        event_id=f"telegram:{connection_id}:{update_id}",
        platform=content_pb2.PLATFORM_TELEGRAM,
        connection_id=connection_id,
        chat_id=str(chat_id),
        platform_message_id=str(message_id),
        sender_id=str(sender_id),
        sender=profile,
        sent_at_ms=date * 1000,
        raw=body,
        media_group_id=read.str_(message, "media_group_id", "message"),
    )
    if kind == "edited_message":
        if content.HasField("location"):
            return None  # a live location moving: an edit every few seconds, not a change of mind
        event.edited.CopyFrom(content)
        event.sent_at_ms = read.int_(message, "edit_date", "message", required=False) * 1000 or event.sent_at_ms
        return event
    event.content.CopyFrom(content)
    event.reply_to_platform_message_id, event.reply_to_quote = quoted(read, message)
    return event


# `my_chat_member.new_chat_member.status` of the bot, from the client's side of a private chat.
_CLOSED_STATUSES = {"kicked": events_pb2.CLOSE_REASON_BLOCKED, "left": events_pb2.CLOSE_REASON_LEFT}
_OPEN_STATUSES = frozenset({"member", "administrator", "creator"})


def _membership(
    read: _Reader, update: Mapping[str, Any], body: bytes, connection_id: str
) -> events_pb2.InboundMessage | None:
    """The client blocked the bot ("kicked") or came back ("member"): the conversation closes or reopens."""
    change = read.obj(update, "my_chat_member", "update")
    chat = read.obj(change, "chat", "my_chat_member")
    if read.str_(chat, "type", "my_chat_member.chat", required=True) != "private":
        return None
    sender = read.obj(change, "from", "my_chat_member")
    status = read.str_(
        read.obj(change, "new_chat_member", "my_chat_member"), "status", "my_chat_member.new_chat_member", required=True
    )
    event = events_pb2.InboundMessage(
        event_id=f"telegram:{connection_id}:{read.update_id}",
        platform=content_pb2.PLATFORM_TELEGRAM,
        connection_id=connection_id,
        chat_id=str(read.int_(chat, "id", "my_chat_member.chat")),
        sender_id=str(read.int_(sender, "id", "my_chat_member.from")),
        sender=_profile(read, sender, "my_chat_member.from"),
        sent_at_ms=read.int_(change, "date", "my_chat_member") * 1000,
        raw=body,
    )
    if status in _CLOSED_STATUSES:
        event.closed.reason = _CLOSED_STATUSES[status]
    elif status in _OPEN_STATUSES:
        event.reopened.SetInParent()
    else:
        return None
    return event


def _profile(read: _Reader, user: Mapping[str, Any], path: str) -> content_pb2.Profile:
    first = read.str_(user, "first_name", path)
    last = read.str_(user, "last_name", path)
    username = read.str_(user, "username", path)
    return content_pb2.Profile(
        name=f"{first} {last}".strip(),
        username=username,
        profile_link=f"https://t.me/{username}" if username else "",
        language=read.str_(user, "language_code", path),
    )


# The MIME type of each kind of file when its object does not say: Telegram stores photos as JPEG, voice
# notes as OGG/Opus, video notes and animations (GIFs included) as MPEG-4.
_DEFAULT_MIME_TYPES: dict[str, str] = {
    "photo": "image/jpeg",
    "animation": "video/mp4",
    "video": "video/mp4",
    "video_note": "video/mp4",
    "voice": "audio/ogg",
    "audio": "audio/mpeg",
    "document": "application/octet-stream",
}


def _media(
    read: _Reader, message: Mapping[str, Any], key: str, kind: content_pb2.MediaKind.ValueType
) -> content_pb2.Content:
    file = read.obj(message, key, "message")
    content = _media_from(read, file, f"message.{key}", kind, read.str_(message, "caption", "message"), key)
    if key == "audio" and not content.media.file_name:
        # A track without a file name is still known by its performer and title.
        performer = read.str_(file, "performer", "message.audio")
        title = read.str_(file, "title", "message.audio")
        label = " - ".join(part for part in (performer, title) if part)
        if label:
            extension = mimetypes.guess_extension(content.media.mime_type) or ""
            content.media.file_name = f"{label}{extension}"
    return content


def _media_from(
    read: _Reader,
    file: Mapping[str, Any],
    path: str,
    kind: content_pb2.MediaKind.ValueType,
    caption: str,
    key: str,
) -> content_pb2.Content:
    return content_pb2.Content(
        media=content_pb2.Media(
            kind=kind,
            file_ref=read.str_(file, "file_id", path, required=True),
            file_name=read.str_(file, "file_name", path),
            size=read.int_(file, "file_size", path, required=False),
            mime_type=read.str_(file, "mime_type", path) or _DEFAULT_MIME_TYPES.get(key, ""),
            caption=caption,
            duration_s=read.int_(file, "duration", path, required=False),
        )
    )


def _sticker_mime_type(read: _Reader, sticker: Mapping[str, Any]) -> str:
    """Static stickers are WEBP, animated ones TGS (gzipped Lottie), video stickers WEBM."""
    for flag, mime_type in (("is_video", "video/webm"), ("is_animated", "application/x-tgsticker")):
        value = sticker.get(flag)
        if value is not None and not isinstance(value, bool):
            raise read.fail(f"message.sticker.{flag}", "a boolean", value)
        if value:
            return mime_type
    return "image/webp"


def _largest_photo(read: _Reader, message: Mapping[str, Any]) -> dict[str, Any]:
    sizes = message.get("photo")
    if not isinstance(sizes, list) or not sizes:
        raise read.fail("message.photo", "a non-empty array", sizes)
    checked: list[dict[str, Any]] = []
    for index, size in enumerate(sizes):
        if not isinstance(size, dict):
            raise read.fail(f"message.photo[{index}]", "an object", size)
        checked.append(size)

    def area(size: dict[str, Any]) -> tuple[int, int]:
        path = "message.photo[]"
        width = read.int_(size, "width", path, required=False)
        height = read.int_(size, "height", path, required=False)
        return width * height, read.int_(size, "file_size", path, required=False)

    # Telegram lists sizes smallest to largest; pick by area anyway so an odd order cannot fool us.
    return max(checked, key=area)


def _content(read: _Reader, message: Mapping[str, Any]) -> content_pb2.Content:
    path = "message"
    caption = read.str_(message, "caption", path)
    if "text" in message:
        return content_pb2.Content(text=content_pb2.Text(body=read.str_(message, "text", path, required=True)))
    if "photo" in message:
        photo = _largest_photo(read, message)
        return _media_from(read, photo, "message.photo[]", content_pb2.MEDIA_KIND_PICTURE, caption, "photo")
    # An animation (GIF / silent MP4) also sets `document`; it plays as a video, so check it first.
    for key, kind in (
        ("animation", content_pb2.MEDIA_KIND_VIDEO),
        ("video", content_pb2.MEDIA_KIND_VIDEO),
        ("video_note", content_pb2.MEDIA_KIND_VIDEO),
        ("voice", content_pb2.MEDIA_KIND_VOICE),
        ("audio", content_pb2.MEDIA_KIND_AUDIO),
        ("document", content_pb2.MEDIA_KIND_FILE),
    ):
        if key in message:
            return _media(read, message, key, kind)
    if "sticker" in message:
        sticker = read.obj(message, "sticker", path)
        return content_pb2.Content(
            sticker=content_pb2.Sticker(
                file_ref=read.str_(sticker, "file_id", "message.sticker", required=True),
                emoji=read.str_(sticker, "emoji", "message.sticker"),
                size=read.int_(sticker, "file_size", "message.sticker", required=False),
                mime_type=_sticker_mime_type(read, sticker),
            )
        )
    if "location" in message:
        location = read.obj(message, "location", path)
        # A venue also sets `location`; its title is the place's name.
        venue = message.get("venue")
        name = read.str_(venue, "title", "message.venue") if isinstance(venue, dict) else ""
        return content_pb2.Content(
            location=content_pb2.Location(
                lat=read.float_(location, "latitude", "message.location"),
                lon=read.float_(location, "longitude", "message.location"),
                name=name,
            )
        )
    if "contact" in message:
        contact = read.obj(message, "contact", path)
        first = read.str_(contact, "first_name", "message.contact")
        last = read.str_(contact, "last_name", "message.contact")
        return content_pb2.Content(
            contact=content_pb2.Contact(
                name=f"{first} {last}".strip(),
                phone=read.str_(contact, "phone_number", "message.contact", required=True),
            )
        )
    # Never drop a client's message silently: the manager sees that something arrived.
    kinds = [key for key in message if key not in _ENVELOPE_FIELDS]
    note = f"[unsupported Telegram message: {kinds[0] if kinds else 'empty'}]"
    return content_pb2.Content(text=content_pb2.Text(body=f"{note}\n{caption}" if caption else note))


# ---------------------------------------------------------------------------------------------------------
# Outbound: the Bot API client


@dataclass(frozen=True)
class BotInfo:
    """What getMe says about the bot behind a token."""

    id: int
    username: str
    first_name: str


CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

# How long a file send may take to be answered once the request is out (see TelegramBotClient._call).
FILE_ANSWER_TIMEOUT_S = 120.0
# 403 descriptions that mean "this client can't be reached" (as opposed to other forbidden calls), with the
# reason a manager reads (libs.status_texts). Telegram says `error_code` may change: branch on both (§1).
_UNREACHABLE_403 = (
    ("blocked", status_texts.CLIENT_BLOCKED),
    ("deactivated", status_texts.CLIENT_DEACTIVATED),
    ("can't initiate", status_texts.CLIENT_NEVER_STARTED),
    ("cannot initiate", status_texts.CLIENT_NEVER_STARTED),
    ("kicked", status_texts.CLIENT_LEFT),
)
# 400: the bot has no such chat (the client never wrote to this bot, or our chat id is wrong).
_CHAT_NOT_FOUND = "chat not found"
# Bot API limits a refusal names (reference §1): sendMessage text 1-4096, captions up to 1024.
_TOO_LONG = (("caption is too long", 1024), ("message is too long", 4096))
_DESCRIPTION_PREFIXES = ("Bad Request: ", "Forbidden: ")


def _envelope(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data: object = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _failure(method: str, outcome: httpx.Response | Exception, token: str) -> BridgeError:
    """The one mapping of a failed Bot API call onto libs.errors. Messages name the method, never the URL,
    and any echo of the token in Telegram's description is masked."""
    where = f"telegram {method}"
    if isinstance(outcome, httpx.TimeoutException):
        return TimedOutError(f"{where}: timed out ({type(outcome).__name__})")
    if isinstance(outcome, httpx.TransportError):
        return RetryableError(f"{where}: connection failed ({type(outcome).__name__})")
    if isinstance(outcome, httpx.InvalidURL):
        return PermanentError(f"{where}: the configured Bot API base URL is invalid")
    if isinstance(outcome, Exception):
        return RetryableError(f"{where}: request failed ({type(outcome).__name__})")

    envelope = _envelope(outcome) or {}
    code = envelope.get("error_code")
    if isinstance(code, bool) or not isinstance(code, int):
        code = outcome.status_code
    description = envelope.get("description")
    if not isinstance(description, str) or not description:
        description = f"HTTP {outcome.status_code}"
    if token:
        description = description.replace(token, "<token>")
    message = f"{where}: {description}"

    if code == 429:
        count_rate_limited("telegram")
        return RateLimitedError(message, retry_after=_retry_after(envelope, outcome))
    if code in (401, 404):
        return CredentialRejectedError(f"{where}: the bot token was rejected ({code} {description})")
    lowered = description.lower()
    for marker, reason in _UNREACHABLE_403 if code == 403 else ():
        if marker in lowered:
            return RecipientUnavailableError(message, reason=reason)
    if 400 <= code < 500:
        if _CHAT_NOT_FOUND in lowered:
            return PermanentError(message, reason=status_texts.CHAT_NOT_FOUND)
        for marker, limit in _TOO_LONG:
            if marker in lowered:
                args = {"platform": "telegram", "limit": str(limit)}
                return PermanentError(message, reason=status_texts.TEXT_TOO_LONG, reason_args=args)
        detail = description
        for prefix in _DESCRIPTION_PREFIXES:
            detail = detail.removeprefix(prefix)
        args = {"platform": "telegram", "detail": detail}
        return PermanentError(message, reason=status_texts.PLATFORM_REFUSED, reason_args=args)
    if code >= 500:
        return RetryableError(message)
    return PermanentError(f"{where}: unexpected response (HTTP {outcome.status_code})")


def _retry_after(envelope: Mapping[str, Any], response: httpx.Response) -> float | None:
    parameters = envelope.get("parameters")
    value: object = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if value is None:
        value = response.headers.get("retry-after")
    try:
        seconds = float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


class Upload(Protocol):
    """Files streamed as multipart/form-data beside a call's parameters (`media.FileUpload`, one file;
    `albums.AlbumUpload`, an album's files)."""

    def encode(self, payload: Mapping[str, Any]) -> tuple[dict[str, str], AsyncIterator[bytes]]:
        """The headers and streamed body of a call with `payload`'s parameters and the files."""


class TelegramBotClient:
    """Calls the Bot API for one bot. `http` is shared and owned by the caller (timeouts, pooling)."""

    def __init__(self, base_url: str, token: str, http: httpx.AsyncClient) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._http = http

    def __repr__(self) -> str:
        # The numeric part of a token is the bot's public id; the rest is the secret.
        bot_id = self._token.partition(":")[0]
        return f"TelegramBotClient(base_url={self._base_url!r}, bot_id={bot_id!r})"

    async def _call(
        self, method: str, payload: dict[str, Any], upload: Upload | None = None, *, slow: bool = False
    ) -> Any:
        """One Bot API call: JSON, or multipart/form-data streaming `upload` beside the parameters. A `slow`
        call (a file send) waits longer for the answer: Telegram answers once it has fetched or received the
        whole file, and a timeout then would leave unknown whether the client got it."""
        outcome: httpx.Response | Exception
        url = f"{self._base_url}/bot{self._token}/{method}"
        base = self._http.timeout
        timeout = (
            httpx.Timeout(
                base.connect, read=max(base.read or 0, FILE_ANSWER_TIMEOUT_S), write=base.write, pool=base.pool
            )
            if slow
            else base
        )
        try:
            if upload is None:
                outcome = await self._http.post(url, json=payload, timeout=timeout)
            else:
                headers, body = upload.encode(payload)
                outcome = await self._http.post(url, content=body, headers=headers, timeout=timeout)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # Raised below, outside this handler, so the httpx error (whose text holds the URL and so the
            # token) is not even chained as __context__.
            outcome = exc
        if isinstance(outcome, httpx.Response) and outcome.is_success:
            envelope = _envelope(outcome)
            if envelope is not None and envelope.get("ok") is True:
                return envelope.get("result")
        raise _failure(method, outcome, self._token)

    async def get_me(self) -> BotInfo:
        result = await self._call("getMe", {})
        if not isinstance(result, dict) or not isinstance(result.get("id"), int):
            raise PermanentError("telegram getMe: the response carries no bot id")
        return BotInfo(
            id=result["id"],
            username=str(result.get("username") or ""),
            first_name=str(result.get("first_name") or ""),
        )

    async def set_webhook(
        self,
        url: str,
        secret_token: str,
        allowed_updates: list[str] | None = None,
        max_connections: int | None = None,
    ) -> None:
        payload: dict[str, Any] = {"url": url, "secret_token": secret_token}
        if allowed_updates is not None:
            payload["allowed_updates"] = allowed_updates
        if max_connections is not None:
            payload["max_connections"] = max_connections
        await self._call("setWebhook", payload)

    async def delete_webhook(self, drop_pending_updates: bool = False) -> None:
        await self._call("deleteWebhook", {"drop_pending_updates": drop_pending_updates})

    async def get_webhook_info(self) -> dict[str, Any]:
        result = await self._call("getWebhookInfo", {})
        if not isinstance(result, dict):
            raise PermanentError("telegram getWebhookInfo: the response carries no WebhookInfo object")
        return result

    async def get_file(self, file_id: str) -> dict[str, Any]:
        """getFile: the File object (`file_path` to download it from); see libs.messengers.telegram.media."""
        result = await self._call("getFile", {"file_id": file_id})
        if not isinstance(result, dict):
            raise PermanentError("telegram getFile: the response carries no File object")
        return result

    async def send_text(self, chat_id: str, text: str, reply_to_message_id: int | None = None) -> int:
        """Send a text message; returns Telegram's message_id (unique within the chat)."""
        payload: dict[str, Any] = {"chat_id": chat_id, "text": text}
        return await self._send("sendMessage", payload, reply_to_message_id)

    async def send_chat_action(self, chat_id: str, action: str = "typing") -> None:
        if action not in CHAT_ACTIONS:
            raise BadRequestError(f"telegram sendChatAction: unknown action {action!r}")
        await self._call("sendChatAction", {"chat_id": chat_id, "action": action})

    async def edit_message_text(self, chat_id: str, message_id: int, text: str) -> None:
        await self._call("editMessageText", {"chat_id": chat_id, "message_id": message_id, "text": text})

    async def edit_message_caption(self, chat_id: str, message_id: int, caption: str) -> None:
        await self._call("editMessageCaption", {"chat_id": chat_id, "message_id": message_id, "caption": caption})

    async def set_message_reaction(self, chat_id: str, message_id: int, emoji: str | None) -> None:
        """Set the bot's reaction (bots get one per message, from Telegram's fixed list); None clears it."""
        reaction = [{"type": "emoji", "emoji": emoji}] if emoji else []
        await self._call("setMessageReaction", {"chat_id": chat_id, "message_id": message_id, "reaction": reaction})

    async def send_content(
        self,
        chat_id: str,
        content: content_pb2.Content,
        reply_to_message_id: int | None = None,
        upload_limit: int | None = None,
    ) -> int:
        """Send canonical content; returns Telegram's message_id. Files are sent as `media.MediaSender` does,
        within `upload_limit` (the Bot API server's; the cloud's 50 MB by default)."""
        kind = content.WhichOneof("body")
        if kind == "text" and content.text.HasField("choices"):
            keyboard: dict[str, Any] = {"chat_id": chat_id, "text": keyboard_text(content.text)}
            keyboard["reply_markup"] = inline_keyboard(content.text.choices)
            return await self._send("sendMessage", keyboard, reply_to_message_id)
        if kind == "text":
            return await self.send_text(chat_id, content.text.body, reply_to_message_id)
        if kind == "location":
            payload: dict[str, Any] = {
                "chat_id": chat_id,
                "latitude": content.location.lat,
                "longitude": content.location.lon,
            }
            return await self._send("sendLocation", payload, reply_to_message_id)
        if kind == "contact":
            # Telegram needs a non-empty first_name; the canonical contact has one full name.
            payload = {
                "chat_id": chat_id,
                "phone_number": content.contact.phone,
                "first_name": content.contact.name or content.contact.phone,
            }
            return await self._send("sendContact", payload, reply_to_message_id)
        if kind in ("media", "sticker"):
            # Imported here: the media module builds on this client.
            from libs.messengers.telegram.media import CLOUD_UPLOAD_LIMIT, MediaSender

            sender = MediaSender(self, self._http, self._base_url, upload_limit or CLOUD_UPLOAD_LIMIT)
            return await sender.send(chat_id, content, reply_to_message_id)
        if kind is None:
            raise BadRequestError("telegram: the content to send is empty")
        raise PermanentError(f"telegram: sending {kind} is not supported yet")

    async def send_file(
        self, method: str, payload: dict[str, Any], reply_to_message_id: int | None, upload: Upload | None = None
    ) -> int:
        """A send method with a file: named in `payload` (a file_id or a URL Telegram fetches) or streamed as
        `upload`; returns the message_id."""
        return await self._send(method, payload, reply_to_message_id, upload, slow=True)

    async def send_media_group(
        self,
        chat_id: str,
        media: list[dict[str, Any]],
        reply_to_message_id: int | None = None,
        upload: Upload | None = None,
    ) -> list[int]:
        """sendMediaGroup: one album of 2-10 InputMedia (files named by URL, file_id or `attach://<part>` of
        `upload`); returns the message_id of each item's message, in order."""
        payload: dict[str, Any] = {"chat_id": chat_id, "media": media}
        if reply_to_message_id is not None:
            payload["reply_parameters"] = {"message_id": reply_to_message_id, "allow_sending_without_reply": True}
        result = await self._call("sendMediaGroup", payload, upload, slow=True)
        messages = result if isinstance(result, list) else []
        ids = [message.get("message_id") if isinstance(message, dict) else None for message in messages]
        if len(ids) != len(media) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise PermanentError("telegram sendMediaGroup: the response does not carry a message per item")
        return [i for i in ids if isinstance(i, int)]

    async def _send(
        self,
        method: str,
        payload: dict[str, Any],
        reply_to_message_id: int | None,
        upload: Upload | None = None,
        *,
        slow: bool = False,
    ) -> int:
        if reply_to_message_id is not None:
            # If the quoted message was deleted meanwhile, still deliver the reply rather than fail it.
            payload["reply_parameters"] = {"message_id": reply_to_message_id, "allow_sending_without_reply": True}
        result = await self._call(method, payload, upload, slow=slow)
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if isinstance(message_id, bool) or not isinstance(message_id, int):
            raise PermanentError(f"telegram {method}: the response carries no message_id")
        return message_id


# ---------------------------------------------------------------------------------------------------------
# The registry's view of Telegram (libs.messengers.registry.MessengerAdapter)

# What the bridge subscribes to: messages, their edits, block/unblock (my_chat_member), and reactions,
# which Telegram sends only to a webhook that names them here.
ALLOWED_UPDATES = ["message", "edited_message", "my_chat_member", "message_reaction", "callback_query"]


class TelegramAdapter:
    """Telegram behind the messenger-agnostic interface the services use."""

    platform: content_pb2.Platform.ValueType = content_pb2.PLATFORM_TELEGRAM
    name: str = "telegram"
    webhook_secret_kind: str = MESSENGER_WEBHOOK_SECRET

    def api_base_url(self, settings: Settings) -> str:
        return settings.telegram_api_url

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, secret: str) -> None:
        verify_webhook(headers, secret)

    def verify_handshake(self, query: Mapping[str, str], secret: str) -> str:
        raise NotFoundError("telegram makes no GET check of a webhook URL")

    def parse_webhook(self, body: bytes, connection_id: str) -> list[events_pb2.InboundMessage]:
        event = parse_update(body, connection_id)
        return [] if event is None else [event]

    def webhook_answer(self, events: Sequence[events_pb2.InboundMessage]) -> dict[str, Any] | None:
        """A tap on a button is answered in the webhook's answer (`answerCallbackQuery`, see `buttons`)."""
        return webhook_answer(events)

    async def check_credentials(self, http: httpx.AsyncClient, base_url: str, token: str) -> ChannelIdentity:
        me = await TelegramBotClient(base_url, token, http).get_me()
        display = f"{me.first_name} (@{me.username})" if me.username else me.first_name
        return ChannelIdentity(external_id=str(me.id), display_name=display)

    async def register_webhook(self, http: httpx.AsyncClient, base_url: str, token: str, url: str, secret: str) -> None:
        await TelegramBotClient(base_url, token, http).set_webhook(url, secret, allowed_updates=ALLOWED_UPDATES)

    async def webhook_health(self, http: httpx.AsyncClient, base_url: str, token: str) -> WebhookHealth:
        info = await TelegramBotClient(base_url, token, http).get_webhook_info()
        pending, error_date, error = (
            info.get("pending_update_count"),
            info.get("last_error_date"),
            info.get("last_error_message"),
        )
        return WebhookHealth(
            url=str(info.get("url") or ""),
            pending_updates=pending if isinstance(pending, int) and not isinstance(pending, bool) else 0,
            last_error_at_ms=error_date * 1000
            if isinstance(error_date, int) and not isinstance(error_date, bool)
            else 0,
            last_error_message=error if isinstance(error, str) and error_date else "",
        )

    async def send(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        token: str,
        chat_id: str,
        content: content_pb2.Content,
        reply_to: str = "",
        limits: MediaLimits | None = None,
    ) -> str:
        reply_to_message_id = int(reply_to) if reply_to.isdigit() else None
        upload_limit = limits.upload_bytes if limits is not None else None
        client = TelegramBotClient(base_url, token, http)
        return str(await client.send_content(chat_id, content, reply_to_message_id, upload_limit))

    def album_runs(self, contents: Sequence[content_pb2.Content], limits: MediaLimits | None) -> list[list[int]]:
        from libs.messengers.telegram.albums import album_runs
        from libs.messengers.telegram.media import CLOUD_UPLOAD_LIMIT

        upload_limit = limits.upload_bytes if limits is not None else None
        return album_runs(contents, upload_limit or CLOUD_UPLOAD_LIMIT)

    async def send_album(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        token: str,
        chat_id: str,
        contents: Sequence[content_pb2.Content],
        reply_to: str = "",
        limits: MediaLimits | None = None,
    ) -> list[str]:
        # Imported here: the album and media modules build on this one's Bot API client.
        from libs.messengers.telegram.albums import AlbumSender
        from libs.messengers.telegram.media import CLOUD_UPLOAD_LIMIT

        upload_limit = (limits.upload_bytes if limits is not None else None) or CLOUD_UPLOAD_LIMIT
        sender = AlbumSender(TelegramBotClient(base_url, token, http), http, base_url, upload_limit)
        reply_to_message_id = int(reply_to) if reply_to.isdigit() else None
        return [str(message_id) for message_id in await sender.send(chat_id, contents, reply_to_message_id)]

    async def edit(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        token: str,
        chat_id: str,
        platform_message_id: str,
        content: content_pb2.Content,
    ) -> None:
        await live.edit(TelegramBotClient(base_url, token, http), chat_id, platform_message_id, content)

    async def react(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        token: str,
        chat_id: str,
        platform_message_id: str,
        emoji: str,
        removed: bool,
    ) -> bool:
        client = TelegramBotClient(base_url, token, http)
        return await live.react(client, chat_id, platform_message_id, emoji, removed=removed)

    def reaction_for(self, emoji: str) -> str | None:
        return telegram_reaction(emoji)

    async def typing(
        self, http: httpx.AsyncClient, base_url: str, token: str, chat_id: str, last_client_message_id: str = ""
    ) -> None:
        await TelegramBotClient(base_url, token, http).send_chat_action(chat_id, "typing")

    def media_limits(self, settings: Settings) -> MediaLimits:
        from libs.messengers.telegram.media import telegram_media_limits

        return telegram_media_limits(settings.telegram_local_api)

    def open_file(
        self, http: httpx.AsyncClient, base_url: str, token: str, file_ref: str
    ) -> AbstractAsyncContextManager[FileStream]:
        # Imported here: the media module builds on this one's Bot API client.
        from libs.messengers.telegram.media import open_download

        return open_download(http, base_url, token, file_ref)
