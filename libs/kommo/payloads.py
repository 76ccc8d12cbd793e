"""What we send to amojo (§3, §4), as frozen dataclasses that serialize to Kommo's exact field names.

amojo is strictly typed: ints must be JSON ints and bools JSON bools, so `to_json()` builds the dict
explicitly instead of dumping dataclasses. Optional fields are omitted when empty.
"""

from __future__ import annotations

import json
import mimetypes
from dataclasses import dataclass
from typing import Any, Final

from kommo_bridge.events.v1 import content_pb2

from libs.errors import BadRequestError

MESSAGE_TYPES: Final = frozenset(
    {"text", "contact", "file", "video", "picture", "voice", "audio", "sticker", "location"}
)
"""Values of `message.type` amojo accepts (§4)."""

FILE_DESCRIBED_TYPES: Final = frozenset({"file", "video", "picture"})
"""Types for which amojo requires `file_name` and `file_size`."""

MEDIA_TYPES: Final = frozenset({"file", "video", "picture", "voice", "audio", "sticker"})
"""Types that carry a `media` URL."""


def encode_body(data: dict[str, Any]) -> bytes:
    """The one serialization of a JSON body we sign: compact, UTF-8, no trailing newline.

    Signatures cover the exact bytes, so a body is encoded once and those bytes are hashed and sent.
    """
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Participant:
    """A chat participant as amojo's `sender`/`receiver`/`user`; `id` is ours, `ref_id` is Kommo's."""

    id: str
    name: str = ""
    ref_id: str = ""
    avatar: str = ""
    profile_link: str = ""
    phone: str = ""
    email: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.ref_id:
            out["ref_id"] = self.ref_id
        if self.name:
            out["name"] = self.name
        if self.avatar:
            out["avatar"] = self.avatar
        profile: dict[str, str] = {}
        if self.phone:
            profile["phone"] = self.phone
        if self.email:
            profile["email"] = self.email
        if profile:
            out["profile"] = profile
        if self.profile_link:
            out["profile_link"] = self.profile_link
        return out


@dataclass(frozen=True)
class MessageBody:
    """amojo's `message` object. `location` is `(lat, lon)`; `contact` is `(name, phone)`.

    Validated on construction so a malformed body fails here, not as a 400 from Kommo. `media_group_id`
    ties the items of an album together: amojo's history and hooks carry it in `message`, so it is sent
    there too, though §4 does not list it for new_message (amojo is expected to ignore it if unknown).
    """

    type: str
    text: str = ""
    media: str = ""
    file_name: str = ""
    file_size: int = 0
    media_duration: int = 0
    sticker_id: str = ""
    location: tuple[float, float] | None = None
    contact: tuple[str, str] | None = None
    media_group_id: str = ""
    # The id of the button or list row a client chose (§4 `callback_data`; its title is the text).
    callback_data: str = ""

    def __post_init__(self) -> None:
        if self.type not in MESSAGE_TYPES:
            raise BadRequestError(f"message type {self.type!r} is not one of {sorted(MESSAGE_TYPES)}")
        if self.type == "text" and not self.text:
            raise BadRequestError("a text message needs text")
        if self.type in MEDIA_TYPES - {"sticker"} and not self.media:
            raise BadRequestError(f"a {self.type} message needs a media URL")
        if self.type == "sticker" and not (self.media or self.sticker_id):
            raise BadRequestError("a sticker message needs a media URL or a sticker_id")
        if self.type in FILE_DESCRIBED_TYPES and not self.file_name:
            raise BadRequestError(f"a {self.type} message needs a file_name")
        if self.file_size < 0 or self.media_duration < 0:
            raise BadRequestError("file_size and media_duration cannot be negative")
        if self.type == "location" and self.location is None:
            raise BadRequestError("a location message needs a location")
        if self.type == "contact" and (self.contact is None or not self.contact[0] or not self.contact[1]):
            raise BadRequestError("a contact message needs a contact name and phone")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.text:
            out["text"] = self.text
        if self.media:
            out["media"] = self.media
        if self.type in FILE_DESCRIBED_TYPES:
            # Required by amojo for these types even when we do not know the size.
            out["file_name"] = self.file_name
            out["file_size"] = int(self.file_size)
        else:
            if self.file_name:
                out["file_name"] = self.file_name
            if self.file_size:
                out["file_size"] = int(self.file_size)
        if self.media_duration:
            out["media_duration"] = int(self.media_duration)
        if self.sticker_id:
            out["sticker_id"] = self.sticker_id
        if self.location is not None:
            lat, lon = self.location
            out["location"] = {"lon": float(lon), "lat": float(lat)}
        if self.contact is not None:
            name, phone = self.contact
            out["contact"] = {"name": name, "phone": phone}
        if self.media_group_id:
            out["media_group_id"] = self.media_group_id
        if self.callback_data:
            out["callback_data"] = self.callback_data
        return out


@dataclass(frozen=True)
class EmbeddedMessage:
    """amojo's embedded message (EMB, §4) naming a message of the same chat: Kommo's `id`, else our
    `msgid`. amojo takes one of them alone, so when both are known Kommo's own id is sent."""

    id: str = ""
    msgid: str = ""

    def __post_init__(self) -> None:
        if not self.id and not self.msgid:
            raise BadRequestError("an embedded message needs Kommo's id or our msgid")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id} if self.id else {"msgid": self.msgid}


@dataclass(frozen=True)
class NewMessage:
    """A `new_message` event (§4). `msgid` and `conversation_id` are ours.

    Incoming from a client: `sender` only. Outgoing (manager/bot written elsewhere): `sender` with
    `ref_id` plus `receiver` = the client. `conversation_ref_id` binds a write-first chat. `reply_to`
    quotes a message of the same chat.
    """

    msgid: str
    conversation_id: str
    sender: Participant
    message: MessageBody
    timestamp_ms: int
    receiver: Participant | None = None
    source_external_id: str = ""
    silent: bool = False
    conversation_ref_id: str = ""
    reply_to: EmbeddedMessage | None = None

    def __post_init__(self) -> None:
        if not self.msgid or not self.conversation_id:
            raise BadRequestError("a new_message needs msgid and conversation_id")
        if self.timestamp_ms <= 0:
            raise BadRequestError("a new_message needs a positive timestamp_ms")

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "timestamp": int(self.timestamp_ms) // 1000,
            "msec_timestamp": int(self.timestamp_ms),
            "msgid": self.msgid,
            "conversation_id": self.conversation_id,
        }
        if self.conversation_ref_id:
            payload["conversation_ref_id"] = self.conversation_ref_id
        payload["sender"] = self.sender.to_json()
        if self.receiver is not None:
            payload["receiver"] = self.receiver.to_json()
        if self.source_external_id:
            payload["source"] = {"external_id": self.source_external_id}
        payload["message"] = self.message.to_json()
        if self.reply_to is not None:
            payload["reply_to"] = {"message": self.reply_to.to_json()}
        payload["silent"] = bool(self.silent)
        return {"event_type": "new_message", "payload": payload}


@dataclass(frozen=True)
class EditedBody:
    """The `message` of an `edit_message`: its type and new text (a caption for media). The media
    fields may be omitted when the file is unchanged (§4), and an edit only changes text, so they are."""

    type: str
    text: str

    def __post_init__(self) -> None:
        if self.type not in MESSAGE_TYPES:
            raise BadRequestError(f"message type {self.type!r} is not one of {sorted(MESSAGE_TYPES)}")
        if self.type == "text" and not self.text:
            raise BadRequestError("a text message needs text")

    def to_json(self) -> dict[str, Any]:
        # `text` always: an empty one is how a removed caption reads.
        return {"type": self.type, "text": self.text}


@dataclass(frozen=True)
class EditMessage:
    """An `edit_message` event (§4): the message named by `target` in our conversation gets `message`.

    amojo ignores sender, receiver, source, reply_to and forwards on an edit, so none are sent.
    """

    conversation_id: str
    target: EmbeddedMessage
    message: EditedBody

    def __post_init__(self) -> None:
        if not self.conversation_id:
            raise BadRequestError("an edit_message needs a conversation_id")

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {**self.target.to_json(), "conversation_id": self.conversation_id}
        payload["message"] = self.message.to_json()
        return {"event_type": "edit_message", "payload": payload}


@dataclass(frozen=True)
class Reaction:
    """A `/react` body (§8): our client (`user.id`) adds or takes back `emoji` on a message. amojo requires
    the emoji to react only: a platform that takes a reaction back without naming it (WhatsApp's empty
    `reaction.emoji`) unreacts with none."""

    conversation_id: str
    target: EmbeddedMessage
    user_id: str
    emoji: str
    removed: bool = False

    def __post_init__(self) -> None:
        if not self.conversation_id or not self.user_id:
            raise BadRequestError("a reaction needs a conversation_id and a user id")
        if not self.emoji and not self.removed:
            raise BadRequestError("a reaction needs an emoji")

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "conversation_id": self.conversation_id,
            **self.target.to_json(),
            "user": {"id": self.user_id},
            "type": "unreact" if self.removed else "react",
        }
        if self.emoji:  # required to react; on unreact it says which of the user's reactions goes
            body["emoji"] = self.emoji
        return body


_KIND_TO_TYPE: Final[dict[int, str]] = {
    content_pb2.MEDIA_KIND_PICTURE: "picture",
    content_pb2.MEDIA_KIND_VIDEO: "video",
    content_pb2.MEDIA_KIND_FILE: "file",
    content_pb2.MEDIA_KIND_VOICE: "voice",
    content_pb2.MEDIA_KIND_AUDIO: "audio",
    # An unspecified kind is still a file we can hand over; "file" is amojo's generic type.
    content_pb2.MEDIA_KIND_UNSPECIFIED: "file",
}


def content_to_edited_body(content: content_pb2.Content) -> EditedBody:
    """What an edit of `content` changes at Kommo: a text, or a media message's caption."""
    kind = content.WhichOneof("body")
    if kind == "text":
        return EditedBody(type="text", text=content.text.body)
    if kind == "media":
        return EditedBody(type=_KIND_TO_TYPE.get(content.media.kind, "file"), text=content.media.caption)
    raise BadRequestError(f"an edit of {kind or 'empty'} content cannot be carried to Kommo")


def _default_file_name(message_type: str, mime_type: str) -> str:
    """amojo needs a file name for pictures/videos; messengers often have none (Telegram photos)."""
    extension = mimetypes.guess_extension(mime_type) if mime_type else None
    return f"{message_type}{extension or ''}"


def content_to_message_body(content: content_pb2.Content) -> MessageBody:
    """Translate our messenger-agnostic Content into amojo's `message` object.

    Media `file_ref` must already be a URL Kommo can download (the sender transfers media first).
    """
    kind = content.WhichOneof("body")
    if kind is None:
        raise BadRequestError("empty content: nothing to send to Kommo")
    if kind == "text":
        if not content.text.body:
            raise BadRequestError("empty text: nothing to send to Kommo")
        return MessageBody(type="text", text=content.text.body, callback_data=content.text.callback_data)
    if kind == "media":
        media = content.media
        if not media.file_ref:
            raise BadRequestError("media without a file reference")
        message_type = _KIND_TO_TYPE.get(media.kind, "file")
        file_name = media.file_name
        if not file_name and message_type in FILE_DESCRIBED_TYPES:
            file_name = _default_file_name(message_type, media.mime_type)
        return MessageBody(
            type=message_type,
            text=media.caption,
            media=media.file_ref,
            file_name=file_name,
            file_size=max(0, media.size),
            media_duration=max(0, media.duration_s),
        )
    if kind == "location":
        location = content.location
        return MessageBody(type="location", text=location.name, location=(location.lat, location.lon))
    if kind == "contact":
        contact = content.contact
        return MessageBody(type="contact", contact=(contact.name, contact.phone))
    # sticker
    sticker = content.sticker
    if sticker.file_ref:
        return MessageBody(type="sticker", media=sticker.file_ref)
    if sticker.emoji:
        # Nothing Kommo can download: the emoji the sticker stands for is the honest fallback.
        return MessageBody(type="text", text=sticker.emoji)
    raise BadRequestError("sticker without a file reference or emoji")
