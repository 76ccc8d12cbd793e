"""What every messenger adapter offers, and the one table that lists them.

Services never name a platform: the gateway, router and messenger_sender look the adapter up here by
platform (or by its URL name). Adding a messenger means adding an adapter module, its emulator, and
one line in `_ADAPTERS`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

import httpx
from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.config import Settings
from libs.errors import NotFoundError
from libs.ratelimit import SharedRateLimiter


@dataclass(frozen=True)
class ChannelIdentity:
    """Who the credentials belong to: the bot / number id and its display name."""

    external_id: str
    display_name: str


@dataclass(frozen=True)
class MediaLimits:
    """A platform's file size limits for a bot, in bytes; None means no limit."""

    download_bytes: int | None
    upload_bytes: int | None


@dataclass(frozen=True)
class FileStream:
    """A platform file being read: its size (None when the platform does not say), the MIME type the
    platform serves it with ("" when none), and its bytes in bounded chunks, never the whole file."""

    size: int | None
    mime_type: str
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True)
class WebhookHealth:
    """What the platform says about a bot's webhook (Telegram getWebhookInfo): where it sends updates
    ("" for nowhere), how many it holds undelivered, and its last delivery failure (0 / "" for none)."""

    url: str
    pending_updates: int
    last_error_at_ms: int
    last_error_message: str


class MessengerAdapter(Protocol):
    platform: content_pb2.Platform.ValueType
    # Used in webhook URLs: /webhooks/<name>/<connection_id>.
    name: str
    # The connection's secret (a kind of libs.secret_names) that `verify_webhook` checks a POST against:
    # the webhook secret the bridge chose (Telegram), or the platform app's own secret (WhatsApp).
    webhook_secret_kind: str

    def api_base_url(self, settings: Settings) -> str: ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, secret: str) -> None:
        """Raise AuthError / MissingCredentialError unless the request comes from the platform."""

    def verify_handshake(self, query: Mapping[str, str], secret: str) -> str:
        """A platform's GET check of the webhook URL (WhatsApp's hub.challenge): the text to answer, when
        the query carries the connection's webhook `secret`. AuthError otherwise; NotFoundError for a
        platform that makes no such check."""

    def parse_webhook(self, body: bytes, connection_id: str) -> list[events_pb2.InboundMessage]:
        """The canonical events of one webhook request, in the platform's order (one request may carry
        several messages and statuses); empty for an update the bridge does not carry."""

    async def check_credentials(self, http: httpx.AsyncClient, base_url: str, token: str) -> ChannelIdentity: ...

    async def register_webhook(
        self, http: httpx.AsyncClient, base_url: str, token: str, url: str, secret: str
    ) -> None: ...

    async def webhook_health(self, http: httpx.AsyncClient, base_url: str, token: str) -> WebhookHealth:
        """Ask the platform now; CredentialRejectedError when it refuses the token."""

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
        """Send to the client, as a reply to message `reply_to` if given; return the platform's message id.
        A file goes within `limits` (`media_limits()`; the platform's defaults when None)."""

    async def edit(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        token: str,
        chat_id: str,
        platform_message_id: str,
        content: content_pb2.Content,
    ) -> None:
        """Change a message already sent to `content`; an edit that changes nothing succeeds."""

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
        """Set (or take back) the bot's reaction on a message; False when the platform has no such emoji."""

    def reaction_for(self, emoji: str) -> str | None:
        """The platform's reaction closest to a manager's `emoji`, or None when it has nothing like it."""

    async def typing(
        self, http: httpx.AsyncClient, base_url: str, token: str, chat_id: str, last_client_message_id: str = ""
    ) -> None:
        """Show the client that someone is typing (for a few seconds, or until the next message). Platforms
        that tie it to a message (WhatsApp) need the client's last message id."""

    def media_limits(self, settings: Settings) -> MediaLimits:
        """What the platform lets a bot download and upload, as configured (e.g. a local Bot API server)."""

    def open_file(
        self, http: httpx.AsyncClient, base_url: str, token: str, file_ref: str
    ) -> AbstractAsyncContextManager[FileStream]:
        """Open a client's file (a `Media.file_ref`) for reading; the response is closed on exit. Raises
        NotFoundError (the file is gone), TooLargeError (over the download limit), or the usual tree."""


@runtime_checkable
class AlbumSending(Protocol):
    """What an adapter of a platform with albums adds (Telegram's sendMediaGroup); see `album_runs`."""

    def album_runs(self, contents: Sequence[content_pb2.Content], limits: MediaLimits | None) -> list[list[int]]:
        """The album cut into consecutive runs (indexes, in order) the platform shows as one album each;
        a run of one item goes as a message of its own."""

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
        """Send one run as one album; the platform's ids of its messages, in order. All or nothing."""


def album_runs(
    adapter: MessengerAdapter, contents: Sequence[content_pb2.Content], limits: MediaLimits | None
) -> list[list[int]]:
    """How a manager's album goes out: the platform's runs, or every item alone, in order, on a
    platform without albums."""
    if isinstance(adapter, AlbumSending):
        return adapter.album_runs(contents, limits)
    return [[index] for index in range(len(contents))]


@runtime_checkable
class DeliveryReceipts(Protocol):
    """What an adapter of a platform that reports each message's fate itself adds (WhatsApp statuses, parsed
    into `InboundMessage.receipt`): there, the platform taking a message is only "sent"; delivered, read
    or failed come later as receipts."""

    delivery_receipts: bool


@runtime_checkable
class ServiceWindow(Protocol):
    """What an adapter of a platform that takes free text only for a while after the client's last
    message adds (WhatsApp's 24-hour customer-service window); outside it only an approved template goes."""

    service_window: timedelta


@runtime_checkable
class FileSizing(Protocol):
    """What an adapter of a platform whose webhooks name a client's file without its size adds (WhatsApp):
    amojo requires `file_size` for files, videos and pictures, so the gateway asks before it publishes."""

    async def file_size(self, http: httpx.AsyncClient, base_url: str, token: str, file_ref: str) -> int | None:
        """The file's size in bytes as the platform stores it; None when it does not say."""


@runtime_checkable
class MessageTemplates(Protocol):
    """What an adapter of a platform with approved message templates adds (WhatsApp): they open a
    conversation ("write first") and go outside the service window; Kommo shows them as chat templates."""

    async def templates(self, http: httpx.AsyncClient, base_url: str, token: str) -> list[events_pb2.PlatformTemplate]:
        """The connected account's templates, as Kommo's chat templates keep them."""


@dataclass(frozen=True)
class SubmittedTemplate:
    """A template the platform took for review: its id there, our key of it (Kommo's `external_id` form),
    and its first verdict as a Kommo review status (`review` while the platform reviews it)."""

    platform_template_id: str
    external_id: str
    review_status: str
    # Kommo's markers in the order of the platform's placeholders, per component (`header`, `body`,
    # `button<index>`): how a manager's message of this template maps its params.
    markers: Mapping[str, Sequence[str]] = field(default_factory=dict)


@runtime_checkable
class TemplateSubmission(Protocol):
    """What an adapter adds whose platform reviews templates a business writes (WhatsApp): Kommo's review
    request of a chat template is submitted there."""

    async def submit_template(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        token: str,
        template: events_pb2.PlatformTemplate,
        fallback: str,
        resumed: bool = False,
    ) -> SubmittedTemplate:
        """Submit the template (named after `template.name`, else `fallback`); PermanentError with the
        platform's reason when it refuses it at once. `resumed`: an earlier attempt may have reached the
        platform, so a template it already has under that name is adopted."""


@runtime_checkable
class WriteFirst(Protocol):
    """What an adapter of a platform where the business may start a conversation adds (WhatsApp, to a phone
    number, with an approved template): Kommo's "write first" names the client by phone only."""

    def chat_for_phone(self, phone: str) -> str | None:
        """The client's chat id (also their sender id) for a phone number, as the platform's webhooks will
        name them; None when `phone` is not a number the platform can write to."""


@runtime_checkable
class ClientAliases(Protocol):
    """What an adapter adds whose clients go by more than one id, and whose number can change (WhatsApp: a
    phone number and a business-scoped user id): the router keeps each client in one conversation
    (services/router/identities.py)."""

    def client_ids(self, event: events_pb2.InboundMessage) -> tuple[str, str]:
        """The ids an event names its client by: its address (the phone number in the platform's form, or the
        platform's user id when the event has no number) and the platform's stable user id ("" if none)."""


@runtime_checkable
class CompositeCredentials(Protocol):
    """What an adapter adds whose stored credential holds more than the token the platform issues (WhatsApp:
    `<phone_number_id>:<waba_id>:<access token>`): a new token replaces only that part."""

    def renewed_credential(self, stored: str, token: str) -> str:
        """The stored credential with `token` as its token."""


@runtime_checkable
class PacedSending(Protocol):
    """What an adapter of a platform that limits how fast a sender may send adds (WhatsApp: messages per
    second per number, and per client): a copy of itself whose sends wait their turn in limits kept by
    `limiter`, shared by every replica (messenger_sender sends with it)."""

    def paced(self, limiter: SharedRateLimiter, settings: Settings) -> MessengerAdapter: ...


def paced(adapter: MessengerAdapter, limiter: SharedRateLimiter, settings: Settings) -> MessengerAdapter:
    """The adapter messenger_sender sends with: paced where the platform limits sending, else as it is."""
    return adapter.paced(limiter, settings) if isinstance(adapter, PacedSending) else adapter


@runtime_checkable
class WebhookAnswer(Protocol):
    """What an adapter adds whose platform runs a method given as the answer to its webhook (Telegram: the
    `answerCallbackQuery` that stops a tapped button's spinner): the gateway answers with it."""

    def webhook_answer(self, events: Sequence[events_pb2.InboundMessage]) -> dict[str, Any] | None:
        """The answer's JSON body for these events, or None for the usual `{"ok": true}`."""


def webhook_answer(adapter: MessengerAdapter, events: Sequence[events_pb2.InboundMessage]) -> dict[str, Any] | None:
    """What the gateway answers a verified, published webhook with, beyond `{"ok": true}`."""
    return adapter.webhook_answer(events) if isinstance(adapter, WebhookAnswer) else None


@runtime_checkable
class KommoSourceServices(Protocol):
    """What an adapter adds whose platform Kommo knows as a source service (WhatsApp): the channel's Kommo
    source declares it (`services`, §11), so Kommo offers what it offers only there (Salesbot's list
    messages, template reviews)."""

    def source_services(self, external_id: str, display_name: str) -> list[events_pb2.SourceService]:
        """The `services` of the source of the channel with this id (bot / number id) and display name."""


def source_services(adapter: MessengerAdapter, external_id: str, display_name: str) -> list[events_pb2.SourceService]:
    """What a channel's Kommo source declares about its messenger; nothing where Kommo knows no such service."""
    if isinstance(adapter, KommoSourceServices):
        return adapter.source_services(external_id, display_name)
    return []


def write_first_chat(adapter: MessengerAdapter, phone: str) -> str | None:
    """The chat a manager's "write first" to `phone` opens; None where the platform cannot start one."""
    return adapter.chat_for_phone(phone) if isinstance(adapter, WriteFirst) else None


def accepted_state(adapter: MessengerAdapter) -> events_pb2.DeliveryState.ValueType:
    """What a message the platform took is, until the platform says more: delivered where the platform
    never says more (a Telegram bot's best), sent where its receipts follow."""
    if isinstance(adapter, DeliveryReceipts) and adapter.delivery_receipts:
        return events_pb2.DELIVERY_STATE_SENT
    return events_pb2.DELIVERY_STATE_DELIVERED


def service_window(adapter: MessengerAdapter) -> timedelta | None:
    """How long after the client's last message free text may go; None for no such rule."""
    return adapter.service_window if isinstance(adapter, ServiceWindow) else None


def _adapters() -> dict[int, MessengerAdapter]:
    from libs.messengers.telegram.adapter import TelegramAdapter
    from libs.messengers.whatsapp.adapter import WhatsAppAdapter

    return {adapter.platform: adapter for adapter in (TelegramAdapter(), WhatsAppAdapter())}


_BY_PLATFORM: dict[int, MessengerAdapter] = {}


def adapter_for(platform: int) -> MessengerAdapter:
    if not _BY_PLATFORM:
        _BY_PLATFORM.update(_adapters())
    try:
        return _BY_PLATFORM[platform]
    except KeyError:
        raise NotFoundError(f"no adapter for platform {platform}") from None


def adapter_named(name: str) -> MessengerAdapter:
    if not _BY_PLATFORM:
        _BY_PLATFORM.update(_adapters())
    for adapter in _BY_PLATFORM.values():
        if adapter.name == name:
            return adapter
    raise NotFoundError(f"unknown messenger {name!r}")


def platform_name(platform: int) -> str:
    return adapter_for(platform).name
