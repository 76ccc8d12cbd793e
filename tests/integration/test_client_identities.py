"""One client, one conversation, whichever of their ids WhatsApp names them by: the identity store keeps the
chat id the conversation was opened with and every phone number and BSUID seen with it, and knows where the
client is written to now."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db import create_engine
from services.router.conversations import ConversationStore
from services.router.identities import ClientIds, IdentityStore

CONNECTION = "conn-wa"
PHONE, NEW_PHONE = "34600111222", "34600999888"
BSUID, OTHER_BSUID = "US.13491208655302741918", "US.55501208655302741000"
_events = itertools.count(1)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def conversation_of(engine: AsyncEngine, chat_id: str) -> str:
    """Record a client message in the conversation of `chat_id` (as the router does after resolving)."""
    recorded = await ConversationStore(engine).record_inbound(
        connection_id=CONNECTION,
        chat_id=chat_id,
        client_id=f"{CONNECTION}:{chat_id}",
        profile={"name": "Ann"},
        dedup_key=f"event-{next(_events)}",
        platform_message_id="wamid.x",
    )
    return recorded.conversation_id


async def test_a_client_who_hides_their_number_keeps_the_chat_their_number_opened(engine: AsyncEngine) -> None:
    identities = IdentityStore(engine)
    assert await identities.resolve(CONNECTION, ClientIds(PHONE, BSUID)) == PHONE  # first sight: the number
    assert await identities.resolve(CONNECTION, ClientIds(BSUID, BSUID)) == PHONE  # the BSUID only, later
    # Still written to at the number the business knows (WhatsApp takes `to` for a hidden number).
    assert await identities.address(CONNECTION, PHONE) == PHONE


async def test_a_bsuid_only_client_is_known_by_it_and_a_number_given_later_joins_them(engine: AsyncEngine) -> None:
    identities = IdentityStore(engine)
    assert await identities.resolve(CONNECTION, ClientIds(BSUID, BSUID)) == BSUID
    assert await identities.address(CONNECTION, BSUID) == BSUID  # sent with `recipient`
    assert await identities.resolve(CONNECTION, ClientIds(PHONE, BSUID)) == BSUID  # shows the number later
    assert await identities.resolve(CONNECTION, ClientIds(PHONE, "")) == BSUID  # a webhook without the BSUID
    assert await identities.address(CONNECTION, BSUID) == PHONE  # the number is known now: `to` it
    # A manager writing first to that number reaches this conversation; a number never seen has none.
    assert await identities.chat_of(CONNECTION, PHONE) == BSUID
    assert await identities.chat_of(CONNECTION, NEW_PHONE) is None


async def test_a_number_change_keeps_the_chat_and_moves_the_address(engine: AsyncEngine) -> None:
    identities = IdentityStore(engine)
    assert await identities.resolve(CONNECTION, ClientIds(PHONE, BSUID)) == PHONE
    changed = ClientIds(PHONE, BSUID, new_address=NEW_PHONE)
    assert await identities.resolve(CONNECTION, changed) == PHONE
    assert await identities.address(CONNECTION, PHONE) == NEW_PHONE
    assert await identities.resolve(CONNECTION, ClientIds(NEW_PHONE, BSUID)) == PHONE
    assert await identities.resolve(CONNECTION, ClientIds(NEW_PHONE, "")) == PHONE  # the new number alone


async def test_a_number_change_without_a_bsuid_is_followed_by_the_number(engine: AsyncEngine) -> None:
    identities = IdentityStore(engine)
    assert await identities.resolve(CONNECTION, ClientIds(PHONE)) == PHONE
    assert await identities.resolve(CONNECTION, ClientIds(PHONE, new_address=NEW_PHONE)) == PHONE
    assert await identities.resolve(CONNECTION, ClientIds(NEW_PHONE)) == PHONE
    assert await identities.address(CONNECTION, PHONE) == NEW_PHONE


async def test_a_number_given_to_someone_else_opens_their_own_conversation(engine: AsyncEngine) -> None:
    """Ann moved to a new number; her old one went to Bo (another BSUID): Bo is not Ann."""
    identities = IdentityStore(engine)
    await conversation_of(engine, await identities.resolve(CONNECTION, ClientIds(PHONE, BSUID)))
    await identities.resolve(CONNECTION, ClientIds(PHONE, BSUID, new_address=NEW_PHONE))
    bo = await identities.resolve(CONNECTION, ClientIds(PHONE, OTHER_BSUID))
    assert bo == OTHER_BSUID  # the number is Ann's conversation's chat id already
    assert await identities.address(CONNECTION, OTHER_BSUID) == PHONE
    assert await identities.resolve(CONNECTION, ClientIds(NEW_PHONE, BSUID)) == PHONE  # Ann is still Ann
    assert await identities.address(CONNECTION, PHONE) == NEW_PHONE


async def test_a_conversation_opened_before_the_ids_were_kept_keeps_its_chat_id(engine: AsyncEngine) -> None:
    """Write first (a manager opens the chat by number) and conversations from before this store: the
    client's first message naming their number and BSUID lands in them; so does one naming the BSUID of a
    conversation opened by BSUID."""
    identities = IdentityStore(engine)
    by_phone = await conversation_of(engine, PHONE)
    assert await identities.resolve(CONNECTION, ClientIds(PHONE, BSUID)) == PHONE
    assert await conversation_of(engine, PHONE) == by_phone
    await conversation_of(engine, OTHER_BSUID)
    assert await identities.resolve(CONNECTION, ClientIds(NEW_PHONE, OTHER_BSUID)) == OTHER_BSUID


async def test_concurrent_first_messages_naming_overlapping_ids_agree_on_one_chat(engine: AsyncEngine) -> None:
    """(A number alone and a BSUID alone, never seen together, cannot be told to be one client.)"""
    identities = IdentityStore(engine)
    for round_ in range(5):
        phone, bsuid = f"3460000{round_:04d}", f"US.{round_:020d}"
        found = await asyncio.gather(
            identities.resolve(CONNECTION, ClientIds(phone, bsuid)),
            identities.resolve(CONNECTION, ClientIds(bsuid, bsuid)),
            identities.resolve(CONNECTION, ClientIds(phone, bsuid)),
            identities.resolve(CONNECTION, ClientIds(bsuid, bsuid)),
        )
        assert len(set(found)) == 1, found


async def test_connections_keep_their_clients_apart(engine: AsyncEngine) -> None:
    identities = IdentityStore(engine)
    assert await identities.resolve(CONNECTION, ClientIds(BSUID, BSUID)) == BSUID
    assert await identities.resolve("another", ClientIds(PHONE, BSUID)) == PHONE
    assert await identities.address("another", "unknown") == "unknown"  # never seen otherwise: its chat id
