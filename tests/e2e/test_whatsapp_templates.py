"""WhatsApp templates end to end (five services as processes, against the Kommo and WhatsApp Cloud
emulators), through the Meta app's own callback URL (`/webhooks/whatsapp`), where Meta sends template
verdicts: verdicts mirrored into Kommo (new, approved, rejected, paused); a manager's template with
parameters, a picture header and a quick reply, whose tap comes back with its payload; a review a user asks
for in Kommo submitted to Meta and Meta's verdict written on it; and forged or stray notifications.

The tests share one stack and one connected number; each uses clients (wa_ids) and templates of its own."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from libs.devstack.stack import SANDBOX_DOMAIN
from libs.messengers.whatsapp.adapter import signature
from tests.e2e.sandbox import Sandbox
from tests.e2e.whatsapp_side import WhatsAppNumber, connect_number
from tests.support import wait_for

pytestmark = pytest.mark.e2e

DELIVERED = 1
PICTURE = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 48 + b"\xff\xd9"


@pytest.fixture(scope="module")
async def whatsapp(shared_sandbox: Sandbox) -> AsyncIterator[WhatsAppNumber]:
    """A number connected from the settings window, and the Meta app's callback URL set to the bridge's
    app-level route in the dashboard (Meta checks it with the connection's verify token first)."""
    number = await connect_number(shared_sandbox, "Template Shop WA", "15550002222")
    verify_token = await shared_sandbox.secret_of(number.connection_id)
    app = await shared_sandbox.http.put(
        f"{shared_sandbox.stack.whatsapp_url}/_emulator/app",
        json={"callback_url": app_callback(shared_sandbox), "verify": True, "verify_token": verify_token},
    )
    assert app.status_code == 200, app.text  # Meta's GET check of the URL passed
    yield number


def app_callback(sandbox: Sandbox) -> str:
    return f"{sandbox.stack.public_url}/webhooks/whatsapp"


async def meta_template(whatsapp: WhatsAppNumber, name: str, components: list[dict[str, Any]]) -> dict[str, Any]:
    """A template the business created at Meta (pending)."""
    response = await whatsapp.sandbox.http.post(
        f"{whatsapp.sandbox.stack.whatsapp_url}/_emulator/templates",
        json={
            "waba_id": whatsapp.business.waba_id,
            "name": name,
            "language": "en_US",
            "category": "UTILITY",
            "components": components,
        },
    )
    response.raise_for_status()
    template: dict[str, Any] = response.json()
    return template


async def meta_decides(whatsapp: WhatsAppNumber, template_id: str, event: str, reason: str = "NONE") -> None:
    """Meta reviews a template and notifies the app's callback URL, which must take it."""
    response = await whatsapp.sandbox.http.post(
        f"{whatsapp.sandbox.stack.whatsapp_url}/_emulator/templates/{template_id}/review",
        json={"event": event, "reason": reason},
    )
    response.raise_for_status()
    delivery = response.json()["delivery"]
    assert delivery["url"] == app_callback(whatsapp.sandbox) and delivery["status"] == 200, delivery


async def meta_templates(whatsapp: WhatsAppNumber) -> list[dict[str, Any]]:
    response = await whatsapp.sandbox.http.get(
        f"{whatsapp.sandbox.stack.whatsapp_url}/_emulator/templates", params={"waba_id": whatsapp.business.waba_id}
    )
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["templates"]
    return found


async def kommo_template(whatsapp: WhatsAppNumber, name: str, status: str) -> dict[str, Any]:
    """The Kommo chat template of that name, once its review status is `status`."""
    found: list[dict[str, Any]] = []

    async def there() -> bool:
        found[:] = [t for t in await whatsapp.kommo_chat_templates() if t["name"] == name]
        return bool(found) and found[0].get("review_status") == status

    await wait_for(there, timeout=60, what=f"Kommo chat template {name} {status}")
    return found[0]


async def post_app_level(sandbox: Sandbox, payload: dict[str, Any], secret: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await sandbox.http.post(
        app_callback(sandbox),
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature(secret, body)},
    )


def client_message(waba_id: str, phone_number_id: str, wa_id: str, text: str) -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550002222", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": f"Client {wa_id[-4:]}"}, "wa_id": wa_id}],
        "messages": [
            {"from": wa_id, "id": f"wamid.{wa_id}{len(text)}", "timestamp": "1760000000", "type": "text",
             "text": {"body": text}}
        ],
    }  # fmt: skip
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": value, "field": "messages"}]}],
    }


async def test_template_verdicts_reach_kommo_through_the_apps_callback_url(whatsapp: WhatsAppNumber) -> None:
    body = [{"type": "BODY", "text": "Hi {{1}}, your parcel {{2}} is on its way."}]
    made = {name: await meta_template(whatsapp, name, body) for name in ("tpl_new", "tpl_ok", "tpl_no", "tpl_paused")}
    await meta_decides(whatsapp, made["tpl_ok"]["id"], "APPROVED")
    await meta_decides(whatsapp, made["tpl_no"]["id"], "REJECTED", "INVALID_FORMAT")
    await meta_decides(whatsapp, made["tpl_paused"]["id"], "APPROVED")
    await meta_decides(whatsapp, made["tpl_paused"]["id"], "PAUSED")

    assert (await kommo_template(whatsapp, "tpl_new", "review"))["type"] == "waba"  # Meta is still reviewing it
    await kommo_template(whatsapp, "tpl_ok", "approved")
    rejected = await kommo_template(whatsapp, "tpl_no", "rejected")
    assert rejected["_embedded"]["reviews"][-1]["reject_reason"] == "INVALID_FORMAT"
    await kommo_template(whatsapp, "tpl_paused", "paused")
    names = [t["name"] for t in await whatsapp.kommo_chat_templates()]
    assert all(names.count(n) == 1 for n in made)  # each mirrored once, however many notifications came


async def test_a_template_with_a_picture_header_parameters_and_a_quick_reply_and_the_clients_tap(
    whatsapp: WhatsAppNumber,
) -> None:
    sandbox, wa_id = whatsapp.sandbox, "5511900000901"
    made = await meta_template(
        whatsapp,
        "order_packed",
        [
            {"type": "HEADER", "format": "IMAGE"},
            {"type": "BODY", "text": "Hi {{1}}, order {{2}} is packed."},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Send it today"}]},
        ],
    )
    await meta_decides(whatsapp, made["id"], "APPROVED")
    template = await kommo_template(whatsapp, "order_packed", "approved")
    assert template["waba_header_type"] == "media"
    assert template["buttons"] == [{"type": "inline", "text": "Send it today"}]

    await whatsapp.client_writes(wa_id, "Is my order packed?")
    await wait_for(lambda: _has_chat(whatsapp, wa_id), timeout=60, what=f"the Kommo chat of {wa_id}")
    conversation_id = await whatsapp.conversation_of(wa_id)
    picture = await sandbox.kommo_attachment("order.jpg", PICTURE, "image/jpeg")
    params = [{"key": "{{1}}", "value": "Ana"}, {"key": "{{2}}", "value": "A-1001"}]
    hook = await sandbox.manager_sends(
        conversation_id,
        {
            "type": "picture",
            "media": picture["url"],
            "file_name": picture["file_name"],
            "file_size": picture["file_size"],
            "template": {"id": template["id"], "external_id": template["external_id"], "content": template["content"],
                         "params": params},
        },
    )  # fmt: skip

    await wait_for(lambda: _sent_count(whatsapp, wa_id, 1), timeout=60, what=f"the template sent to {wa_id}")
    [sent] = await whatsapp.sent_to(wa_id)
    assert sent["type"] == "template"
    components = sent["body"]["template"]["components"]
    [header] = [c for c in components if c["type"] == "header"]
    [image] = [p["image"] for p in header["parameters"] if p["type"] == "image"]
    assert await _bytes_of(whatsapp, image) == PICTURE
    [body] = [c for c in components if c["type"] == "body"]
    assert [p["text"] for p in body["parameters"]] == ["Ana", "A-1001"]
    [button] = [c for c in components if c["type"] == "button"]
    assert (button["sub_type"], button["index"], button["parameters"]) == (
        "quick_reply",
        "0",
        [{"type": "payload", "payload": "Send it today"}],
    )

    async def delivered() -> bool:
        return [s["status"] for s in (await sandbox.kommo_statuses()).get(hook["kommo_msgid"], [])] == [DELIVERED]

    await wait_for(delivered, timeout=60, what="the template's delivered status in Kommo")

    tap = {
        "type": "button",
        "button": {"payload": "Send it today", "text": "Send it today"},
        "context": {"id": sent["id"]},
    }
    await whatsapp.client_sends(wa_id, tap)

    async def tapped() -> bool:
        return len(await whatsapp.incoming_from(wa_id)) >= len(["the question", "the tap"])

    await wait_for(tapped, timeout=60, what="the client's tap in Kommo")
    answer = (await whatsapp.incoming_from(wa_id))[1]
    assert answer["message"]["text"] == "Send it today"
    assert answer["message"]["callback_data"] == "Send it today"


async def test_a_review_asked_for_in_kommo_is_submitted_to_meta_and_metas_approval_lands_on_it(
    whatsapp: WhatsAppNumber,
) -> None:
    sandbox = whatsapp.sandbox
    await _subscribed(sandbox)
    created = await _user_writes_template(
        sandbox,
        {
            "name": "Pedido pronto",
            "content": "Olá {{contact.name}}, o pedido {{lead.id}} está pronto.",
            "type": "waba",
            "waba_category": "UTILITY",
            "waba_language": "pt_BR",
            "waba_footer": "Loja Exemplo",
            "waba_header_type": "text",
            "waba_header": "Seu pedido",
            "waba_examples": {"{{contact.name}}": "Ana", "{{lead.id}}": "1001"},
            "buttons": [
                {"type": "inline", "text": "Vou buscar"},
                {"type": "url", "text": "Acompanhar", "url": "https://loja.example/p/{{lead.id}}"},
            ],
        },
    )
    review = await _user_asks_review(sandbox, created["id"])

    submitted = await _meta_has(whatsapp, "pedido_pronto")
    assert (submitted["language"], submitted["category"], submitted["status"]) == ("pt_BR", "UTILITY", "PENDING")
    assert submitted["components"] == [
        {"type": "HEADER", "format": "TEXT", "text": "Seu pedido"},
        {
            "type": "BODY",
            "text": "Olá {{1}}, o pedido {{2}} está pronto.",
            "example": {"body_text": [["Ana", "1001"]]},
        },
        {"type": "FOOTER", "text": "Loja Exemplo"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Vou buscar"},
                {
                    "type": "URL",
                    "text": "Acompanhar",
                    "url": "https://loja.example/p/{{1}}",
                    "example": ["https://loja.example/p/1001"],
                },
            ],
        },
    ]

    # Kommo's hook again (its retry): submitted once, the review untouched.
    [hook] = [d for d in await _account_hooks(sandbox) if f"add%5B0%5D%5Bid%5D={created['id']}&" in d["body"] + "&"]
    again = await sandbox.http.post(
        hook["destination"], content=hook["body"], headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert again.status_code == 200
    await wait_for(sandbox.pipeline_idle, timeout=60, what="the bridge idle")
    assert [t["name"] for t in await meta_templates(whatsapp)].count("pedido_pronto") == 1
    assert (await _kommo_review(sandbox, created["id"]))["status"] == "review"

    await meta_decides(whatsapp, submitted["id"], "APPROVED")

    async def approved() -> bool:
        return bool((await _kommo_review(sandbox, created["id"]))["status"] == "approved")

    await wait_for(approved, timeout=60, what="Meta's approval on the Kommo review")
    assert (await _kommo_review(sandbox, created["id"]))["id"] == review["id"]
    await wait_for(sandbox.pipeline_idle, timeout=60, what="the bridge idle")
    assert "pedido_pronto" not in [t["name"] for t in await whatsapp.kommo_chat_templates()]  # never mirrored twice

    # A manager sends it: Kommo names it by its own id and markers; WhatsApp gets Meta's template.
    wa_id = "5511900000921"
    await whatsapp.client_writes(wa_id, "Oi, meu pedido?")
    await wait_for(lambda: _has_chat(whatsapp, wa_id), timeout=60, what=f"the Kommo chat of {wa_id}")
    params = [{"key": "{{contact.name}}", "value": "Ana"}, {"key": "{{lead.id}}", "value": "1001"}]
    hook = await sandbox.manager_sends(
        await whatsapp.conversation_of(wa_id),
        {"template": {"id": created["id"], "content": created["content"], "params": params}},
    )
    assert hook["body"]["message"]["message"]["text"] == "Olá Ana, o pedido 1001 está pronto."
    await wait_for(lambda: _sent_count(whatsapp, wa_id, 1), timeout=60, what=f"the template sent to {wa_id}")
    [sent] = await whatsapp.sent_to(wa_id)
    assert sent["type"] == "template"
    assert (sent["body"]["template"]["name"], sent["body"]["template"]["language"]) == (
        "pedido_pronto",
        {"code": "pt_BR"},
    )
    assert sent["body"]["template"]["components"] == [
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "1001"}]},
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "0",
            "parameters": [{"type": "payload", "payload": "Vou buscar"}],
        },
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "1001"}]},
    ]


async def test_a_review_meta_refuses_at_once_is_rejected_in_kommo_with_metas_reason(whatsapp: WhatsAppNumber) -> None:
    sandbox = whatsapp.sandbox
    await meta_template(whatsapp, "ja_existe", [{"type": "BODY", "text": "Already here"}])
    await _subscribed(sandbox)
    created = await _user_writes_template(
        sandbox,
        {"name": "Já existe", "content": "Outro texto", "type": "waba", "waba_category": "UTILITY",
         "waba_language": "en_US"},
    )  # fmt: skip
    await _user_asks_review(sandbox, created["id"])

    async def rejected() -> bool:
        return bool((await _kommo_review(sandbox, created["id"]))["status"] == "rejected")

    await wait_for(rejected, timeout=60, what="the Kommo review rejected")
    reason = (await _kommo_review(sandbox, created["id"]))["reject_reason"]
    assert "already exists" in reason and "100" in reason


async def test_a_forged_app_level_notification_is_refused_and_a_stray_one_acknowledged(
    whatsapp: WhatsAppNumber,
) -> None:
    sandbox, business = whatsapp.sandbox, whatsapp.business
    forged = await post_app_level(
        sandbox, client_message(business.waba_id, business.phone_number_id, "5511900000911", "forged"), "not-the-secret"
    )
    assert forged.status_code == 403
    unsigned = await sandbox.http.post(
        app_callback(sandbox), content=b'{"object":"whatsapp_business_account","entry":[]}'
    )
    assert unsigned.status_code == 200  # it names no account: nothing to verify, nothing published
    stray = await post_app_level(
        sandbox,
        client_message("999000111222333", business.phone_number_id, "5511900000912", "stray"),
        business.app_secret,
    )
    assert stray.status_code == 200  # an account we do not have: acknowledged, or Meta retries it for days
    other_number = await post_app_level(
        sandbox, client_message(business.waba_id, "123456789", "5511900000913", "other"), business.app_secret
    )
    assert other_number.status_code == 200
    genuine = await post_app_level(
        sandbox,
        client_message(business.waba_id, business.phone_number_id, "5511900000914", "genuine"),
        business.app_secret,
    )
    assert genuine.status_code == 200

    await wait_for(lambda: _has_chat(whatsapp, "5511900000914"), timeout=60, what="the genuine message in Kommo")
    await wait_for(sandbox.pipeline_idle, timeout=60, what="the bridge idle")
    for wa_id in ("5511900000911", "5511900000912", "5511900000913"):
        assert await whatsapp.incoming_from(wa_id) == []

    check = await sandbox.http.get(
        app_callback(sandbox), params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "42"}
    )
    assert check.status_code == 403


# -- helpers


async def _has_chat(whatsapp: WhatsAppNumber, wa_id: str) -> bool:
    return any(
        c["client"].get("client_id", "") == f"{whatsapp.connection_id}:{wa_id}"
        for c in await whatsapp.sandbox.kommo_chats()
    )


async def _sent_count(whatsapp: WhatsAppNumber, wa_id: str, count: int) -> bool:
    return len(await whatsapp.sent_to(wa_id)) >= count


async def _bytes_of(whatsapp: WhatsAppNumber, media: dict[str, Any]) -> bytes:
    """The header's file as WhatsApp gets it: fetched from its link, or uploaded and named by its id."""
    sandbox = whatsapp.sandbox
    if "link" in media:
        return (await sandbox.http.get(media["link"])).content
    stored = (await sandbox.http.get(f"{sandbox.stack.whatsapp_url}/_emulator/media")).json()["media"]
    [uploaded] = [m for m in stored if m["id"] == media["id"]]
    assert uploaded["sha256"] == hashlib.sha256(PICTURE).hexdigest()
    return PICTURE


def _accounts(sandbox: Sandbox) -> str:
    return f"{sandbox.stack.kommo_accounts_url}/_emulator/accounts/{SANDBOX_DOMAIN}"


async def _subscribed(sandbox: Sandbox) -> None:
    """The bridge subscribed to the account's review requests (it does once it synced templates)."""

    async def there() -> bool:
        hooks = (await sandbox.http.get(f"{_accounts(sandbox)}/webhooks")).json()["webhooks"]
        return any("add_chat_template_review" in h["settings"] for h in hooks)

    await wait_for(there, timeout=60, what="the subscription to add_chat_template_review")


async def _user_writes_template(sandbox: Sandbox, fields: dict[str, Any]) -> dict[str, Any]:
    response = await sandbox.http.post(f"{_accounts(sandbox)}/user/chat_templates", json=fields)
    assert response.status_code == 201, response.text
    template: dict[str, Any] = response.json()["chat_template"]
    return template


async def _user_asks_review(sandbox: Sandbox, template_id: int) -> dict[str, Any]:
    response = await sandbox.http.post(f"{_accounts(sandbox)}/user/chat_templates/{template_id}/review", json={})
    assert response.status_code == 201, response.text
    answer = response.json()
    assert [d["status"] for d in answer["deliveries"]] == [200], answer["deliveries"]
    review: dict[str, Any] = answer["review"]
    return review


async def _account_hooks(sandbox: Sandbox) -> list[dict[str, Any]]:
    response = await sandbox.http.get(f"{sandbox.stack.kommo_accounts_url}/_emulator/account_webhooks")
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


async def _kommo_review(sandbox: Sandbox, template_id: int) -> dict[str, Any]:
    templates = (await sandbox.http.get(f"{_accounts(sandbox)}/chat_templates")).json()["chat_templates"]
    [template] = [t for t in templates if t["id"] == template_id]
    review: dict[str, Any] = template["_embedded"]["reviews"][-1]
    return review


async def _meta_has(whatsapp: WhatsAppNumber, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def there() -> bool:
        found[:] = [t for t in await meta_templates(whatsapp) if t["name"] == name]
        return bool(found)

    await wait_for(there, timeout=60, what=f"template {name} submitted to Meta")
    return found[0]
