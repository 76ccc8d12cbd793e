"""What every messenger adapter offers, and the one table that lists them.

Services never name a platform: the gateway, router and messenger_sender look the adapter up here by
platform (or by its URL name). Adding a messenger means adding an adapter module, its emulator, and
one line in `_ADAPTERS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx
from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.config import Settings
from libs.errors import NotFoundError


@dataclass(frozen=True)
class ChannelIdentity:
    """Who the credentials belong to: the bot / number id and its display name."""

    external_id: str
    display_name: str


class MessengerAdapter(Protocol):
    platform: content_pb2.Platform.ValueType
    # Used in webhook URLs: /webhooks/<name>/<connection_id>.
    name: str

    def api_base_url(self, settings: Settings) -> str: ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, secret: str) -> None:
        """Raise AuthError / MissingCredentialError unless the request comes from the platform."""

    def parse_webhook(self, body: bytes, connection_id: str) -> events_pb2.InboundMessage | None:
        """The canonical event, or None for an update the bridge does not carry."""

    async def check_credentials(self, http: httpx.AsyncClient, base_url: str, token: str) -> ChannelIdentity: ...

    async def register_webhook(
        self, http: httpx.AsyncClient, base_url: str, token: str, url: str, secret: str
    ) -> None: ...

    async def send(
        self, http: httpx.AsyncClient, base_url: str, token: str, chat_id: str, content: content_pb2.Content
    ) -> str:
        """Send to the client; return the platform's message id."""


def _adapters() -> dict[int, MessengerAdapter]:
    from libs.messengers.telegram.adapter import TelegramAdapter

    return {adapter.platform: adapter for adapter in (TelegramAdapter(),)}


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
