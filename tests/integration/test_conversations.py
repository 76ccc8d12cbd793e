"""The router's conversation record: one row per client chat, profile changes detected only when a
name, phone or e-mail really changes, and closing / reopening."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from libs.db import create_engine
from services.router.conversations import ConversationStore

_ids = itertools.count(1)


async def record(store: ConversationStore, profile: dict[str, str]) -> tuple[bool, bool, dict[str, str]]:
    recorded = await store.record_inbound(
        connection_id="conn",
        chat_id="42",
        client_id="conn:42",
        profile=profile,
        dedup_key=f"event-{next(_ids)}",
        platform_message_id="1",
    )
    return recorded.contact_changed, recorded.reopened, recorded.profile


async def test_profile_changes_are_detected_only_when_the_contact_would_change(database_url: str) -> None:
    engine = create_engine(database_url)
    store = ConversationStore(engine)
    ann = {"name": "Ann", "username": "ann", "profileLink": "https://t.me/ann", "language": "en"}
    assert await record(store, ann) == (False, False, ann)  # a new conversation: nothing to update yet
    assert (await record(store, ann))[0] is False  # the same profile again
    assert (await record(store, {**ann, "language": "es"}))[0] is False  # not a contact field
    changed, _, profile = await record(store, {**ann, "phone": "+15550102030"})
    assert changed and profile["phone"] == "+15550102030"
    changed, _, profile = await record(store, ann)  # a message without the phone keeps it
    assert not changed and profile["phone"] == "+15550102030"
    assert (await record(store, {**ann, "name": "Ann B"}))[0] is True
    await engine.dispose()


async def test_a_closed_conversation_reopens_with_the_next_message(database_url: str) -> None:
    engine = create_engine(database_url)
    store = ConversationStore(engine)
    assert await store.close(connection_id="conn", chat_id="42", reason="blocked") is None  # never wrote
    await record(store, {"name": "Bo"})
    assert await store.close(connection_id="conn", chat_id="42", reason="blocked") is not None
    assert (await record(store, {"name": "Bo"}))[1] is True
    assert (await record(store, {"name": "Bo"}))[1] is False
    await engine.dispose()


async def test_the_clients_newest_message_is_kept_by_the_platforms_clock(database_url: str) -> None:
    """It opens a platform's service window (WhatsApp) and carries its typing: a message that arrives late
    (held, redelivered) never moves it back, and a retry of one already recorded changes nothing."""
    engine = create_engine(database_url)
    store = ConversationStore(engine)
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    async def client_says(wamid: str, sent_at: datetime, dedup_key: str = "") -> str:
        recorded = await store.record_inbound(
            connection_id="wa",
            chat_id="5511",
            client_id="wa:5511",
            profile={"name": "Ana"},
            dedup_key=dedup_key or wamid,
            platform_message_id=wamid,
            sent_at=sent_at,
        )
        return recorded.conversation_id

    conversation_id = await client_says("wamid.1", at)
    assert await store.client_message(conversation_id) == (at, "wamid.1")
    await client_says("wamid.3", at + timedelta(minutes=5))
    await client_says("wamid.2", at + timedelta(minutes=2))  # older, arriving late
    assert await store.client_message(conversation_id) == (at + timedelta(minutes=5), "wamid.3")
    await client_says("wamid.9", at + timedelta(hours=1), dedup_key="wamid.3")  # a redelivery of wamid.3
    assert await store.client_message(conversation_id) == (at + timedelta(minutes=5), "wamid.3")
    assert await store.client_message("no-such-conversation") == (None, "")
    await engine.dispose()
