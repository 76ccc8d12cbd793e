"""Every webhook is verified before anything is published; bad input gets a clear 4xx."""

from __future__ import annotations

import json

import pytest

from libs.kommo.signing import hook_signature
from tests.e2e.sandbox import Sandbox

pytestmark = pytest.mark.e2e


async def test_bad_webhooks_get_a_clear_4xx_and_publish_nothing(sandbox: Sandbox) -> None:
    secret = await sandbox.webhook_secret()
    telegram_url = f"{sandbox.stack.public_url}/webhooks/telegram/{sandbox.channel.connection_id}"
    kommo_url = f"{sandbox.stack.public_url}/webhooks/kommo/{sandbox.scope_id}"
    update = json.dumps(
        {
            "update_id": 1,
            "message": {
                "message_id": 1,
                "date": 1_760_000_000,
                "chat": {"id": 1, "type": "private"},
                "from": {"id": 1, "is_bot": False, "first_name": "Mallory"},
                "text": "hi",
            },
        }
    ).encode()
    hook = json.dumps(
        {
            "account_id": sandbox.channel.account_id,
            "time": 1_760_000_000,
            "message": {
                "receiver": {"id": "r", "client_id": "c"},
                "sender": {"id": "s"},
                "conversation": {"id": "k", "client_id": "c"},
                "timestamp": 1_760_000_000,
                "msec_timestamp": 1_760_000_000_000,
                "message": {"id": "m", "type": "text", "text": "hi"},
            },
        }
    ).encode()
    channel_secret = sandbox.stack.channel_secret
    before = await sandbox.stream_counts()

    cases = [
        ("telegram, no secret", telegram_url, update, {}, 401),
        ("telegram, wrong secret", telegram_url, update, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}, 403),
        ("telegram, malformed JSON", telegram_url, b"{not json", {"X-Telegram-Bot-Api-Secret-Token": secret}, 400),
        (
            "telegram, unknown connection",
            f"{sandbox.stack.public_url}/webhooks/telegram/00000000-0000-0000-0000-000000000000",
            update,
            {"X-Telegram-Bot-Api-Secret-Token": secret},
            404,
        ),
        (
            "unknown messenger",
            f"{sandbox.stack.public_url}/webhooks/icq/{sandbox.channel.connection_id}",
            update,
            {},
            404,
        ),
        ("kommo, no signature", kommo_url, hook, {}, 401),
        ("kommo, wrong signature", kommo_url, hook, {"X-Signature": hook_signature("0" * 40, hook)}, 403),
        (
            "kommo, body changed after signing",
            kommo_url,
            hook.replace(b'"hi"', b'"hi!"'),
            {"X-Signature": hook_signature(channel_secret, hook)},
            403,
        ),
        (
            "kommo, malformed JSON",
            kommo_url,
            b"{not json",
            {"X-Signature": hook_signature(channel_secret, b"{not json")},
            400,
        ),
        (
            "kommo, unknown scope",
            f"{sandbox.stack.public_url}/webhooks/kommo/{sandbox.stack.channel_id}_unknown-account",
            hook,
            {"X-Signature": hook_signature(channel_secret, hook)},
            404,
        ),
    ]
    for name, url, body, headers, expected in cases:
        response = await sandbox.http.post(url, content=body, headers={"Content-Type": "application/json", **headers})
        assert response.status_code == expected, (name, response.status_code, response.text)
        answer = response.json()
        assert answer["ok"] is False and answer["error"], name
        assert secret not in response.text and channel_secret not in response.text

    assert await sandbox.stream_counts() == before
