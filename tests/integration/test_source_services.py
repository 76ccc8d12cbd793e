"""kommo_sender's source sync keeps a channel's `services` in Kommo (kommo-chats-api.md §11), against real
PostgreSQL and the Kommo account emulator: a WhatsApp number's new source declares them, one made before
this version gets them on its next sync (also in a new process), an adopted one is made consistent, a
Telegram bot's declares none, and should Kommo refuse them the source is still made without them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kommo_bridge.events.v1 import events_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db import create_engine
from libs.db.schema import kommo_sources
from libs.kommo.emulator import CrmState
from libs.kommo.emulator.accounts import AccountsState, create_account_emulator
from libs.kommo.emulator.crm_records import Source
from libs.kommo.rest import AccountAccess, KommoRestClient
from libs.messengers.registry import adapter_named, source_services
from libs.ratelimit import SharedRateLimiter
from services.kommo_sender.crm import AccountTokens, SourceSync, kommo_services

CLIENT_ID = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
CLIENT_SECRET = "Zt7Qm2Wx9Lp4Rv6Ns1Kd8Hb3Jf5Gc0Ya7Ue2Io4Pl9Mk6Nj1Bh3Vg8Cf5Dx0Sz"
REDIRECT_URI = "http://bridge.test/kommo/oauth"
AMOJO_ID = "52e591f7-c98f-4255-8495-827210138c81"
SCOPE_ID = f"344a5002-f8ca-454d-af3d-396180102ac7_{AMOJO_ID}"
DOMAIN = "shop.kommo.com"
CHANNEL_CODE = "amo.ext.bridge"
NUMBER_ID = "106540352242922"
NUMBER_NAME = "Shop WA (15550001111)"
REST_RATE = 5.0
"""Under the emulator's 7 requests per second, as kommo_sender keeps under Kommo's."""


class FixedTokens(AccountTokens):
    """The account's token as the auth service would hand it out (the auth service is not under test)."""

    def __init__(self, access: AccountAccess) -> None:
        self._access = access

    async def get(self, scope_id: str) -> AccountAccess:
        return self._access

    def forget(self, scope_id: str) -> None:
        return None


@dataclass
class Kommo:
    crm: CrmState
    engine: AsyncEngine
    rest: KommoRestClient
    tokens: FixedTokens

    def sync(self) -> SourceSync:
        """A fresh SourceSync: a kommo_sender process starting with nothing remembered."""
        return SourceSync(self.engine, self.rest, self.tokens, CHANNEL_CODE)

    def source(self, external_id: str) -> Source:
        [found] = self.crm.sources_by_external_id(AMOJO_ID, [external_id])
        return found

    async def row_services(self, external_id: str) -> str:
        async with self.engine.connect() as conn:
            query = select(kommo_sources.c.services).where(kommo_sources.c.external_id == external_id)
            return str((await conn.execute(query)).scalar_one())


@pytest.fixture
async def kommo(database_url: str) -> AsyncIterator[Kommo]:
    crm = CrmState()
    app, accounts = create_account_emulator(AccountsState(crm=crm))
    accounts.register_integration(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI)
    accounts.create_account(DOMAIN, AMOJO_ID, 30_123_456, "Shop")
    grant = accounts.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, accounts.issue_code(DOMAIN), REDIRECT_URI)
    engine = create_engine(database_url)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        rest = KommoRestClient(
            http,
            "http://kommo.test/accounts/{domain}",
            SharedRateLimiter(engine),
            per_account=REST_RATE,
            per_ip=REST_RATE,
        )
        yield Kommo(crm, engine, rest, FixedTokens(AccountAccess(DOMAIN, grant.access_token)))
    await engine.dispose()


def whatsapp_spec(name: str = NUMBER_NAME) -> events_pb2.SourceSpec:
    services = source_services(adapter_named("whatsapp"), NUMBER_ID, NUMBER_NAME)
    return events_pb2.SourceSpec(external_id=NUMBER_ID, name=name, services=services)


def expected_services() -> list[dict[str, Any]]:
    return [
        {
            "type": "whatsapp",
            "params": {"waba": True, "is_supports_list_message": True},
            "pages": [{"id": NUMBER_ID, "name": NUMBER_NAME, "link": "https://wa.me/15550001111"}],
        }
    ]


async def test_a_numbers_new_source_declares_its_services_and_a_bots_none(kommo: Kommo) -> None:
    sync = kommo.sync()
    await sync.ensure(SCOPE_ID, whatsapp_spec())
    await sync.ensure(SCOPE_ID, events_pb2.SourceSpec(external_id="7000000001", name="Shop bot"))

    assert kommo.source(NUMBER_ID).services == expected_services()
    assert kommo.source("7000000001").services == []
    assert await kommo.row_services("7000000001") == ""
    assert await kommo.row_services(NUMBER_ID) != ""


async def test_a_source_made_before_gets_its_services_on_the_next_sync(kommo: Kommo) -> None:
    # The previous version: the number's source without services, recorded as synced.
    await kommo.sync().ensure(SCOPE_ID, events_pb2.SourceSpec(external_id=NUMBER_ID, name=NUMBER_NAME))
    before = kommo.source(NUMBER_ID)
    assert before.services == [] and await kommo.row_services(NUMBER_ID) == ""

    await kommo.sync().ensure(SCOPE_ID, whatsapp_spec())  # a new process, the same name and pipeline

    after = kommo.source(NUMBER_ID)
    assert after.id == before.id and after.services == expected_services()
    assert len(kommo.crm.sources(AMOJO_ID)) == 1
    # Recorded: a later process that wants the same has nothing to change.
    after.services = []
    await kommo.sync().ensure(SCOPE_ID, whatsapp_spec())
    assert kommo.source(NUMBER_ID).services == []


async def test_an_adopted_source_is_made_consistent_and_a_bots_keeps_its_own(kommo: Kommo) -> None:
    other = [{"type": "whatsapp", "params": {"waba": False}, "pages": []}]
    kommo.crm.create_sources(
        AMOJO_ID,
        [
            {"name": NUMBER_NAME, "external_id": NUMBER_ID, "services": other},
            {"name": "Shop bot", "external_id": "7000000001", "services": other},
        ],
    )

    sync = kommo.sync()
    await sync.ensure(SCOPE_ID, whatsapp_spec())
    await sync.ensure(SCOPE_ID, events_pb2.SourceSpec(external_id="7000000001", name="Shop bot"))

    assert kommo.source(NUMBER_ID).services == expected_services()
    assert kommo.source("7000000001").services == other  # declaring nothing changes nothing
    assert len(kommo.crm.sources(AMOJO_ID)) == 2


async def test_services_kommo_refuses_leave_the_source_without_them(kommo: Kommo) -> None:
    spec = whatsapp_spec()
    spec.services[0].type = "whatsapp_business"  # a type this Kommo does not know
    assert kommo_services(spec)[0]["type"] == "whatsapp_business"

    await kommo.sync().ensure(SCOPE_ID, spec)
    assert kommo.source(NUMBER_ID).services == [] and await kommo.row_services(NUMBER_ID) == ""

    renamed = whatsapp_spec("Shop WhatsApp")  # the next sync (valid services) gives them
    await kommo.sync().ensure(SCOPE_ID, renamed)
    source = kommo.source(NUMBER_ID)
    assert (source.name, source.services) == ("Shop WhatsApp", expected_services())
