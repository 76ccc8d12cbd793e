"""A manager reads why a reply failed, in the account's language: the admin who opened the settings
window from a Spanish Kommo made the account Spanish, and a Telegram refusal becomes Kommo's error code
with the matching Spanish text."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from libs.status_texts import REASONS
from tests.e2e.sandbox import Sandbox
from tests.support import wait_for

FAILED = -1


async def account_in_spanish(sandbox: Sandbox) -> None:
    url = await sandbox.admin_opens_settings("es")
    assert parse_qs(urlsplit(url).fragment)["lang"] == ["es"]  # the window opens in the admin's language too


async def conversation_of(sandbox: Sandbox, user_id: int, text: str) -> str:
    await sandbox.client_writes(user_id, text)

    async def in_kommo() -> bool:
        return any(c["client"].get("client_id", "").endswith(f":{user_id}") for c in await sandbox.kommo_chats())

    await wait_for(in_kommo, timeout=30, what=f"the chat of client {user_id} in Kommo")
    return await sandbox.conversation_of(user_id)


async def status_of(sandbox: Sandbox, kommo_msgid: str) -> list[dict[str, Any]]:
    async def posted() -> bool:
        return bool((await sandbox.kommo_statuses()).get(kommo_msgid))

    await wait_for(posted, timeout=30, what="a delivery status in Kommo")
    return (await sandbox.kommo_statuses())[kommo_msgid]


async def test_a_client_who_blocked_the_bot_reads_as_blocked_in_spanish(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    await account_in_spanish(sandbox)
    conversation = await conversation_of(sandbox, 9101, "hola")
    await sandbox.client_blocks_bot(9101)

    hook = await sandbox.manager_writes(conversation, "¿Sigues ahí?")
    [status] = await status_of(sandbox, hook["kommo_msgid"])
    assert (status["status"], status["error_code"]) == (FAILED, 901)
    assert status["error"] == REASONS["client_blocked"].es
    assert status["error"].startswith("No entregado: el cliente bloqueó el bot.")


async def test_a_bot_that_cannot_write_first_reads_as_never_started_in_spanish(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    await account_in_spanish(sandbox)
    conversation = await conversation_of(sandbox, 9102, "hola")
    await sandbox.telegram_refuses_next("sendMessage", 403, "Forbidden: bot can't initiate conversation with a user")

    hook = await sandbox.manager_writes(conversation, "Buenos días")
    [status] = await status_of(sandbox, hook["kommo_msgid"])
    assert (status["status"], status["error_code"]) == (FAILED, 904)
    assert status["error"] == REASONS["client_never_started"].es
    assert all(sent["message"].get("text") != "Buenos días" for sent in await sandbox.telegram_sent())
