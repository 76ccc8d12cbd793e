"""The WhatsApp adapter: both directions of the translation between the Cloud API and canonical events.

Inbound (used by the gateway): Meta checks a webhook URL with a GET handshake (`hub.mode=subscribe`,
`hub.verify_token`, `hub.challenge`) and signs every POST with `X-Hub-Signature-256: sha256=<hex
HMAC-SHA256(app secret, raw body)>`. The verify token is the connection's webhook secret, which the bridge
chooses and registers as a phone-number webhook override; the app secret is Meta's, kept per connection
(`messenger.app_secret`). Both are compared in constant time, the signature over the exact bytes received:
Meta signs its unicode-escaped JSON, so a body parsed and written again no longer matches. `inbound`
turns a notification into events. Outbound (used by messenger_sender): `outbound` and `media` through the
Graph client of `cloud_api`; the connection's "token" is its `CloudCredentials` in their stored form.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import httpx
from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.errors import AuthError, BadRequestError, CredentialRejectedError, MissingCredentialError, NotFoundError
from libs.messengers.registry import ChannelIdentity, FileStream, MediaLimits, SubmittedTemplate, WebhookHealth
from libs.messengers.whatsapp.cloud_api import CloudCredentials, GraphClient
from libs.messengers.whatsapp.inbound import parse_notification
from libs.messengers.whatsapp.kommo_source import whatsapp_source_services
from libs.messengers.whatsapp.media import open_download, whatsapp_media_limits
from libs.messengers.whatsapp.outbound import OutboundSender, edit_refused
from libs.messengers.whatsapp.pacing import SendPacing, SendRates
from libs.messengers.whatsapp.template_submission import submission
from libs.messengers.whatsapp.templates import REVIEW_STATUSES, TemplateKey, kommo_template
from libs.secret_names import MESSENGER_APP_SECRET

if TYPE_CHECKING:
    from libs.config import Settings
    from libs.ratelimit import SharedRateLimiter

SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
SIGNATURE_PREFIX: Final = "sha256="
VARIATION_SELECTOR: Final = "\ufe0f"
CUSTOMER_SERVICE_WINDOW: Final = timedelta(hours=24)
OTHER_ACCOUNT_CODE: Final = "whatsapp_token_other_account"
"""A token Graph accepts that cannot reach the number or its business account (another business's token,
or ids that do not belong together)."""
E164_DIGITS: Final = range(7, 16)
"""How many digits a phone number in international form has (E.164: at most 15, the country code included)."""


def wa_id_for_phone(phone: str) -> str | None:
    """The `wa_id` WhatsApp names a client by, for a phone number written any way (`+55 11 9…`, `5511…`):
    its digits, country code first. None when it cannot be an international number."""
    digits = "".join(c for c in phone if c.isdigit())
    return digits if len(digits) in E164_DIGITS else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def signature(app_secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value Meta sends with `body`."""
    return SIGNATURE_PREFIX + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(headers: Mapping[str, str], body: bytes, app_secret: str) -> None:
    """The POST came from Meta: its signature is the app secret's HMAC of these exact bytes. An empty
    app secret never passes: it would make every request look authentic."""
    received = _header(headers, SIGNATURE_HEADER)
    if not received:
        raise MissingCredentialError(f"whatsapp webhook: header {SIGNATURE_HEADER} is missing")
    if not app_secret:
        raise AuthError("whatsapp webhook: no app secret is configured for this connection")
    if not received.startswith(SIGNATURE_PREFIX):
        raise AuthError(f"whatsapp webhook: header {SIGNATURE_HEADER} is not '{SIGNATURE_PREFIX}<hex>'")
    if not hmac.compare_digest(received.lower().encode("ascii", "replace"), signature(app_secret, body).encode()):
        raise AuthError(f"whatsapp webhook: header {SIGNATURE_HEADER} does not match the body")


def verification_challenge(query: Mapping[str, str], verify_token: str) -> str:
    """Meta's GET check of the callback URL: the challenge to echo when the mode is `subscribe` and the
    verify token is the connection's; AuthError (answered 403) otherwise."""
    if query.get("hub.mode") != "subscribe":
        raise AuthError("whatsapp webhook check: hub.mode is not 'subscribe'")
    received = query.get("hub.verify_token") or ""
    if not verify_token or not hmac.compare_digest(received.encode("utf-8"), verify_token.encode("utf-8")):
        raise AuthError("whatsapp webhook check: hub.verify_token does not match the connection's")
    challenge = query.get("hub.challenge") or ""
    if not challenge:
        raise AuthError("whatsapp webhook check: hub.challenge is missing")
    return challenge


def whatsapp_reaction(emoji: str) -> str | None:
    """WhatsApp takes any single emoji as a reaction; text is not one."""
    plain = emoji.strip()
    if not plain or any(c.isascii() and c.isalnum() for c in plain) or len(plain.replace(VARIATION_SELECTOR, "")) > 8:
        return None
    return plain


class WhatsAppAdapter:
    """WhatsApp Cloud API behind the messenger-agnostic interface the services use."""

    platform: content_pb2.Platform.ValueType = content_pb2.PLATFORM_WHATSAPP
    name: str = "whatsapp"
    webhook_secret_kind: str = MESSENGER_APP_SECRET
    # Statuses (sent, delivered, read, failed) follow every message; free text only within 24 h of the
    # client's last message (reference §2, "24-hour customer-service window").
    delivery_receipts: bool = True
    service_window: timedelta = CUSTOMER_SERVICE_WINDOW

    def __init__(self, pacing: SendPacing | None = None) -> None:
        self._pacing = pacing

    @property
    def pacing(self) -> SendPacing | None:
        """What its message sends wait for (messenger_sender's); None sends unpaced."""
        return self._pacing

    def paced(self, limiter: SharedRateLimiter, settings: Settings) -> WhatsAppAdapter:
        """This adapter with every message waiting for its turn in the number's limits (see `pacing`)."""
        rates = SendRates(
            settings.whatsapp_send_rate,
            settings.whatsapp_pair_rate,
            settings.whatsapp_pair_burst,
            settings.whatsapp_number_rates,
        )
        return WhatsAppAdapter(SendPacing(limiter, rates))

    def api_base_url(self, settings: Settings) -> str:
        return settings.whatsapp_graph_url

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, secret: str) -> None:
        verify_signature(headers, body, secret)

    def verify_handshake(self, query: Mapping[str, str], secret: str) -> str:
        return verification_challenge(query, secret)

    def parse_webhook(self, body: bytes, connection_id: str) -> list[events_pb2.InboundMessage]:
        return parse_notification(body, connection_id)

    def _client(self, http: httpx.AsyncClient, base_url: str, token: str) -> GraphClient:
        return GraphClient(base_url, CloudCredentials.parse(token), http, self._pacing)

    async def check_credentials(self, http: httpx.AsyncClient, base_url: str, token: str) -> ChannelIdentity:
        """The number behind the credential, and that it belongs to the business account named with it."""
        client = self._client(http, base_url, token)
        try:
            number = await client.phone_number()
            numbers = await client.account_phone_numbers()
        except NotFoundError as exc:  # Graph's answer for an id the token may not see, too
            raise CredentialRejectedError(
                f"whatsapp: the access token cannot reach this number or account ({exc})",
                code=OTHER_ACCOUNT_CODE,
            ) from None
        phone_number_id = client.credentials.phone_number_id
        if not any(str(n.get("id")) == phone_number_id for n in numbers):
            raise CredentialRejectedError(
                f"whatsapp: phone number {phone_number_id} is not a number of business account "
                f"{client.credentials.waba_id}",
                code=OTHER_ACCOUNT_CODE,
            )
        name = str(number.get("verified_name") or "")
        phone = str(number.get("display_phone_number") or "")
        display = f"{name} ({phone})" if name and phone else name or phone or phone_number_id
        return ChannelIdentity(external_id=phone_number_id, display_name=display)

    async def register_webhook(self, http: httpx.AsyncClient, base_url: str, token: str, url: str, secret: str) -> None:
        """Subscribe the app to the business account, then point this number's webhooks at `url` with
        `secret` as the verify token (Meta checks it with the GET handshake before it answers)."""
        client = self._client(http, base_url, token)
        await client.subscribe_app()
        await client.set_callback(url, secret)

    async def webhook_health(self, http: httpx.AsyncClient, base_url: str, token: str) -> WebhookHealth:
        """Where Meta sends this number's webhooks. Graph reports no backlog or delivery errors."""
        configuration = await self._client(http, base_url, token).webhook_configuration()
        url = next(
            (
                value
                for key in ("phone_number", "whatsapp_business_account", "application")
                if isinstance(value := configuration.get(key), str) and value
            ),
            "",
        )
        return WebhookHealth(url=url, pending_updates=0, last_error_at_ms=0, last_error_message="")

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
        upload_limit = limits.upload_bytes if limits is not None else None
        sender = OutboundSender(self._client(http, base_url, token), http, base_url, upload_limit)
        return await sender.send(chat_id, content, reply_to)

    async def edit(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        token: str,
        chat_id: str,
        platform_message_id: str,
        content: content_pb2.Content,
    ) -> None:
        raise edit_refused()

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
        allowed = None if removed else whatsapp_reaction(emoji)
        if not removed and allowed is None:
            return False
        sender = OutboundSender(self._client(http, base_url, token), http, base_url)
        await sender.react(chat_id, platform_message_id, allowed or "")
        return True

    def reaction_for(self, emoji: str) -> str | None:
        return whatsapp_reaction(emoji)

    async def typing(
        self, http: httpx.AsyncClient, base_url: str, token: str, chat_id: str, last_client_message_id: str = ""
    ) -> None:
        """WhatsApp shows "typing…" on a client's message (marking it, and every earlier one, read)."""
        if not last_client_message_id:
            raise BadRequestError("whatsapp: a typing indicator needs the client's last message id")
        await self._client(http, base_url, token).typing(last_client_message_id)

    async def mark_read(self, http: httpx.AsyncClient, base_url: str, token: str, platform_message_id: str) -> None:
        """Show the client's message (and every earlier one) as read."""
        await self._client(http, base_url, token).mark_read(platform_message_id)

    def media_limits(self, settings: Settings) -> MediaLimits:
        return whatsapp_media_limits()

    def chat_for_phone(self, phone: str) -> str | None:
        """A business writes first to a phone number; the client's webhooks then name them by this `wa_id`."""
        return wa_id_for_phone(phone)

    def source_services(self, external_id: str, display_name: str) -> list[events_pb2.SourceService]:
        """The number's Kommo source declares WhatsApp with list messages and template reviews."""
        return whatsapp_source_services(external_id, display_name)

    def renewed_credential(self, stored: str, token: str) -> str:
        """The connection's number and business account ids with a new access token (a fixed credential)."""
        credentials = CloudCredentials.parse(stored)
        return CloudCredentials(credentials.phone_number_id, credentials.waba_id, token.strip()).encode()

    def client_ids(self, event: events_pb2.InboundMessage) -> tuple[str, str]:
        """The `wa_id` (or the BSUID when the webhook has no number) and the BSUID (libs/.../inbound.py)."""
        return event.chat_id, event.sender.platform_user_id

    async def templates(self, http: httpx.AsyncClient, base_url: str, token: str) -> list[events_pb2.PlatformTemplate]:
        """The business account's message templates as Kommo's chat templates keep them."""
        client = self._client(http, base_url, token)
        found = [kommo_template(client.credentials.waba_id, t) for t in await client.templates()]
        return [t for t in found if t is not None]

    async def submit_template(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        token: str,
        template: events_pb2.PlatformTemplate,
        fallback: str,
        resumed: bool = False,
    ) -> SubmittedTemplate:
        """Kommo's chat template submitted for Meta's review (`POST /{waba-id}/message_templates`). A resumed
        submission (an earlier attempt may have reached Meta before its answer was lost) adopts the template
        Meta already has under that name, rather than be refused as a name taken."""
        client = self._client(http, base_url, token)
        body, markers = submission(template, fallback)
        existing = await client.template(body["name"], body["language"]) if resumed else None
        created = existing or await client.create_template(body)
        status = REVIEW_STATUSES.get(str(created.get("status", "PENDING")).upper(), "review")
        key = TemplateKey(client.credentials.waba_id, body["name"], body["language"])
        return SubmittedTemplate(str(created.get("id", "")), key.external_id, status, markers)

    async def file_size(self, http: httpx.AsyncClient, base_url: str, token: str, file_ref: str) -> int | None:
        """`GET /{media-id}`: webhooks carry no size, Graph's media node does (no download needed)."""
        return (await self._client(http, base_url, token).media_info(file_ref)).file_size

    def open_file(
        self, http: httpx.AsyncClient, base_url: str, token: str, file_ref: str
    ) -> AbstractAsyncContextManager[FileStream]:
        return open_download(http, base_url, token, file_ref)
