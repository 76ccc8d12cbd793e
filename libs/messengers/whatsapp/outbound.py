"""A manager's message into WhatsApp messages (reference/messenger-apis.md §2, "Outbound").

Text (with a link preview when it holds a link), a text with buttons or a list (see `interactive`), files
(see `media`), locations, contacts, approved templates (see `templates`), each as a reply
when the manager quoted a client's message (`context.message_id`); reactions; and the refusal of edits,
which WhatsApp does not let a business make.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Final

import httpx
from kommo_bridge.events.v1 import content_pb2

from libs import status_texts
from libs.errors import BadRequestError, BridgeError, PermanentError, RetryableError
from libs.media.outbound_files import OutboundFile
from libs.messengers.whatsapp.cloud_api import GraphClient, recipient_field
from libs.messengers.whatsapp.graph_errors import PLATFORM
from libs.messengers.whatsapp.interactive import interactive_object
from libs.messengers.whatsapp.media import DOCUMENT_LIMIT, MediaPreparer, outbound_file
from libs.messengers.whatsapp.templates import TemplateKey, header_media_format, header_media_missing, template_message

log = logging.getLogger(__name__)

TEXT_LIMIT: Final = 4096
# A caption too long for WhatsApp follows its file as a text; a refusal of that text to wait out is waited
# out this many times (the file is already out, so the message as a whole cannot be retried).
FOLLOW_UP_ATTEMPTS: Final = 3
FOLLOW_UP_PAUSE_S: Final = 1.0
FOLLOW_UP_MAX_PAUSE_S: Final = 10.0
_LINK_RE: Final = re.compile(r"\bhttps?://\S", re.IGNORECASE)


def _text_object(body: str) -> dict[str, Any]:
    if not body.strip():
        raise BadRequestError("whatsapp: the text to send is empty")
    if len(body) > TEXT_LIMIT:
        raise PermanentError(
            f"whatsapp: the text is {len(body)} characters, over WhatsApp's {TEXT_LIMIT}",
            reason=status_texts.TEXT_TOO_LONG,
            reason_args={"platform": PLATFORM, "limit": str(TEXT_LIMIT)},
        )
    # A preview shows only when asked for; ask when there is a link to show.
    return {"body": body, "preview_url": bool(_LINK_RE.search(body))}


def _contact_object(contact: content_pb2.Contact) -> dict[str, Any]:
    if not contact.phone:
        raise BadRequestError("whatsapp: a contact needs a phone number")
    name = contact.name or contact.phone
    return {"name": {"formatted_name": name, "first_name": name}, "phones": [{"phone": contact.phone, "type": "CELL"}]}


class OutboundSender:
    """Sends canonical content to one client of one business number."""

    def __init__(
        self, client: GraphClient, http: httpx.AsyncClient, api_base_url: str, upload_limit: int | None = None
    ) -> None:
        self._client = client
        self._media = MediaPreparer(client, http, api_base_url, upload_limit or DOCUMENT_LIMIT)

    def _message(self, chat_id: str, kind: str, body: dict[str, Any] | list[Any], reply_to: str) -> dict[str, Any]:
        field, recipient = recipient_field(chat_id)
        message: dict[str, Any] = {field: recipient, "type": kind, kind: body}
        if reply_to:
            message["context"] = {"message_id": reply_to}
        return message

    async def send(self, chat_id: str, content: content_pb2.Content, reply_to: str = "") -> str:
        """Send to the client; returns the message's id (`wamid.…`)."""
        kind = content.WhichOneof("body")
        if kind == "text" and content.text.HasField("choices"):
            interactive = interactive_object(content.text)
            return await self._client.send(self._message(chat_id, "interactive", interactive, reply_to))
        if kind == "text":
            return await self._client.send(self._message(chat_id, "text", _text_object(content.text.body), reply_to))
        if kind == "location":
            location = content.location
            body: dict[str, Any] = {"latitude": location.lat, "longitude": location.lon}
            if location.name:
                body["name"] = location.name
            return await self._client.send(self._message(chat_id, "location", body, reply_to))
        if kind == "contact":
            contacts = [_contact_object(content.contact)]
            return await self._client.send(self._message(chat_id, "contacts", contacts, reply_to))
        if kind in ("media", "sticker"):
            return await self._send_file(chat_id, outbound_file(content), reply_to)
        if kind == "template":  # allowed outside the 24-hour window: that is what templates are for
            message = self._message(chat_id, "template", await self._template(content.template), reply_to)
            return await self._client.send(message, "send template")
        if kind is None:
            raise BadRequestError("whatsapp: the content to send is empty")
        raise PermanentError(
            f"whatsapp: sending {kind} is not supported",
            reason=status_texts.TYPE_UNSUPPORTED,
            reason_args={"type": kind, "platform": PLATFORM},
        )

    async def _template(self, template: content_pb2.Template) -> dict[str, Any]:
        """The template as Meta has it decides the components; a header's file goes by link or upload, like
        any file (checked first: a template needing one and given none is refused without a call)."""
        key = TemplateKey.parse(template.external_id)
        definition = await self._client.template(key.name, key.language)
        media_kind = header_media_format(definition)
        header_media: dict[str, object] | None = None
        if media_kind and not template.HasField("header_media"):
            raise header_media_missing(template, media_kind)
        if media_kind:
            prepared = await self._media.prepare(outbound_file(content_pb2.Content(media=template.header_media)))
            header_media = {k: v for k, v in prepared.media.items() if k in ("link", "id", "filename")}
            if media_kind != "document":
                header_media.pop("filename", None)
        return template_message(template, definition, header_media)

    async def _send_file(self, chat_id: str, file: OutboundFile, reply_to: str) -> str:
        prepared = await self._media.prepare(file)
        wamid = await self._client.send(self._message(chat_id, prepared.shape.type, prepared.media, reply_to))
        log.info("file sent", extra={"type": prepared.shape.type, "by": next(iter(prepared.media)), "size": file.size})
        if file.caption and not prepared.caption_sent:
            await self._send_caption_after(chat_id, file)
        return wamid

    async def _send_caption_after(self, chat_id: str, file: OutboundFile) -> None:
        """The file is out, so a failure now must not make the whole message go again (the client would get
        the file twice): a refusal to wait out is waited out here, a few times, else it is reported."""
        for attempt in range(1, FOLLOW_UP_ATTEMPTS + 1):
            failure: BridgeError | None = None
            try:
                await self._client.send(self._message(chat_id, "text", _text_object(file.caption), ""))
            except RetryableError as exc:
                failure = exc
                if attempt < FOLLOW_UP_ATTEMPTS:
                    await asyncio.sleep(min(exc.retry_after or FOLLOW_UP_PAUSE_S, FOLLOW_UP_MAX_PAUSE_S))
                    continue
            except BridgeError as exc:
                failure = exc
            if failure is None:
                return
            raise PermanentError(
                f"whatsapp: the file {file.file_name!r} was sent, but not its text: {failure}",
                reason=status_texts.PLATFORM_REFUSED,
                reason_args={"platform": PLATFORM, "detail": f"the text after {file.file_name} ({failure})"},
            )

    async def react(self, chat_id: str, platform_message_id: str, emoji: str) -> None:
        """Set the business's reaction on a message ("" takes it back)."""
        body = {"message_id": platform_message_id, "emoji": emoji}
        await self._client.send(self._message(chat_id, "reaction", body, ""), "react")


def edit_refused() -> PermanentError:
    return PermanentError(
        "whatsapp: a business cannot edit a message already sent",
        reason=status_texts.EDIT_UNSUPPORTED,
        reason_args={"platform": PLATFORM},
    )
