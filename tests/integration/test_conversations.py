"""The router's conversation record: one row per client chat, profile changes detected only when a
name, phone or e-mail really changes, and closing / reopening."""

from __future__ import annotations

import itertools

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
