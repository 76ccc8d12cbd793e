"""A WhatsApp business number worked from Kommo, end to end (five services as processes, against the Kommo
and WhatsApp Cloud emulators): connected from the settings window with its checks, messages and files
both ways, WhatsApp's statuses moving Kommo's forward only, and the 24-hour customer-service window.

The tests share one stack and one connected number; each uses clients (wa_ids) of its own."""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from libs.cli import main as cli
from libs.cli.main import Target
from libs.errors import BadRequestError
from tests.e2e.sandbox import Sandbox
from tests.e2e.test_settings_api import settings_client
from tests.e2e.whatsapp_side import WhatsAppNumber, connect_number, new_business, refused
from tests.support import wait_for

pytestmark = pytest.mark.e2e

DELIVERED, READ, FAILED = 1, 2, -1
OUTSIDE_THE_WINDOW = timedelta(hours=25)
PICTURE = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 64 + b"\xff\xd9"


@pytest.fixture(scope="module")
async def whatsapp(shared_sandbox: Sandbox) -> AsyncIterator[WhatsAppNumber]:
    """A business number connected to the sandbox account from the settings window, as an admin does."""
    yield await connect_number(shared_sandbox, "Sandbox Shop WA", "15550001111")


async def kommo_statuses_of(sandbox: Sandbox, msgid: str, count: int = 1) -> list[dict[str, Any]]:
    """The statuses Kommo got for a manager's message, once it has at least `count` and nothing is on its
    way any more (so a late, wrong one would show)."""

    async def settled() -> bool:
        return len((await sandbox.kommo_statuses()).get(msgid, [])) >= count and await sandbox.pipeline_idle()

    await wait_for(settled, timeout=60, what=f"{count} delivery status(es) for {msgid}")
    return (await sandbox.kommo_statuses())[msgid]


async def open_chat(whatsapp: WhatsAppNumber, wa_id: str) -> str:
    """The client writes, so Kommo has the chat (and WhatsApp's window is open)."""
    await whatsapp.client_writes(wa_id, "Hi, is my order ready?")

    async def chat_exists() -> bool:
        return any(
            c["client"].get("client_id", "") == f"{whatsapp.connection_id}:{wa_id}"
            for c in await whatsapp.sandbox.kommo_chats()
        )

    await wait_for(chat_exists, timeout=60, what=f"the Kommo chat of WhatsApp client {wa_id}")
    return await whatsapp.conversation_of(wa_id)


async def sent_once(whatsapp: WhatsAppNumber, wa_id: str, count: int = 1) -> list[dict[str, Any]]:
    async def sent() -> bool:
        return len(await whatsapp.sent_to(wa_id)) >= count

    await wait_for(sent, timeout=60, what=f"{count} message(s) sent to WhatsApp client {wa_id}")
    return await whatsapp.sent_to(wa_id)


async def file_whatsapp_got(whatsapp: WhatsAppNumber, wa_id: str, index: int) -> dict[str, Any]:
    """The file of the `index`th message sent to the client, as WhatsApp stored it: fetched from the link
    the message named (Meta fetches it after answering), or uploaded first and named by its id."""
    sent = (await whatsapp.sent_to(wa_id))[index]
    media = sent["body"][sent["type"]]
    if "link" in media:
        fetched: dict[str, Any] = media["fetched"]
        return fetched
    stored = (await whatsapp.sandbox.http.get(f"{whatsapp.sandbox.stack.whatsapp_url}/_emulator/media")).json()
    [uploaded] = [m for m in stored["media"] if m["id"] == media["id"]]
    return dict(uploaded)


async def test_connecting_checks_the_credentials_live_and_subscribes_the_number(
    shared_sandbox: Sandbox, whatsapp: WhatsAppNumber
) -> None:
    business = whatsapp.business
    graph = shared_sandbox.stack.whatsapp_url
    config = await shared_sandbox.http.get(
        f"{graph}/v23.0/{business.phone_number_id}",
        params={"fields": "webhook_configuration"},
        headers={"Authorization": f"Bearer {business.access_token}"},
    )
    expected = f"{shared_sandbox.stack.public_url}/webhooks/whatsapp/{whatsapp.connection_id}"
    assert config.json()["webhook_configuration"]["phone_number"] == expected

    page = await settings_client(shared_sandbox)
    form = {
        "platform": "whatsapp",
        "phone_number_id": business.phone_number_id,
        "waba_id": business.waba_id,
        "token": "EAAG-not-the-token",
        "app_secret": business.app_secret,
    }
    try:
        wrong = await page.post("/settings/api/channels", json=form)
        assert "did not accept" in refused(wrong, 400, "whatsapp_token_rejected")
        no_secret = {**form, "token": business.access_token, "app_secret": ""}
        refused(await page.post("/settings/api/channels", json=no_secret), 400, "app_secret_missing")
        no_ids = {**form, "token": business.access_token, "waba_id": ""}
        refused(await page.post("/settings/api/channels", json=no_ids), 400, "whatsapp_ids_missing")
    finally:
        await page.aclose()


async def test_bridgectl_connects_a_number_with_secrets_from_files(
    shared_sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = shared_sandbox.stack
    business = await new_business(shared_sandbox, "Console Shop WA", "15550003333")
    target = Target(f"127.0.0.1:{stack.auth_port}", f"127.0.0.1:{stack.router_port}", stack.service_token, {})
    (tmp_path / "token").write_text("EAAG-wrong\n")
    (tmp_path / "app_secret").write_text(business.app_secret + "\n")
    args = argparse.Namespace(
        platform="whatsapp",
        account=shared_sandbox.channel.account_id,
        token_file=str(tmp_path / "token"),
        app_secret_file=str(tmp_path / "app_secret"),
        phone_number_id=business.phone_number_id,
        waba_id=business.waba_id,
        source=None,
    )
    with pytest.raises(BadRequestError) as refused_by_cli:
        await cli.connections_connect(target, args)
    assert refused_by_cli.value.code == "whatsapp_token_rejected"

    (tmp_path / "token").write_text(business.access_token + "\n")
    await cli.connections_connect(target, args)
    printed = capsys.readouterr().out
    assert printed.startswith("connected Console Shop WA (15550003333) (whatsapp) as "), printed
    assert f"source:  whatsapp-{business.phone_number_id}" in printed
    assert business.access_token not in printed and business.app_secret not in printed


async def test_a_clients_text_and_picture_reach_kommo_and_kommo_downloads_the_same_bytes(
    whatsapp: WhatsAppNumber,
) -> None:
    wa_id = "5511900000101"
    await whatsapp.client_writes(wa_id, "Hello from WhatsApp")
    await whatsapp.client_sends_picture(wa_id, PICTURE, "the broken part")

    found: list[dict[str, Any]] = []

    async def both_arrived() -> bool:
        found[:] = await whatsapp.incoming_from(wa_id)
        return len(found) == 2

    await wait_for(both_arrived, timeout=60, what="the client's two messages in Kommo")
    text, picture = found
    assert text["message"] == {"type": "text", "text": "Hello from WhatsApp"}
    assert picture["message"]["type"] == "picture" and picture["message"]["text"] == "the broken part"
    # WhatsApp's webhook carries no size: the gateway asked Graph for it, as amojo requires one.
    assert picture["message"]["file_size"] == len(PICTURE)
    assert picture["message"]["media"].startswith(f"{whatsapp.sandbox.stack.public_url}/media/v1/")
    assert whatsapp.business.access_token not in picture["message"]["media"]

    downloads: list[dict[str, Any]] = []

    async def downloaded() -> bool:
        downloads[:] = await whatsapp.sandbox.kommo_media_downloads(picture["msgid"])
        return bool(downloads) and all(d["done"] for d in downloads)

    await wait_for(downloaded, timeout=60, what="Kommo's download of the picture")
    [download] = downloads
    assert (download["status"], download["size"]) == (200, len(PICTURE))
    assert download["sha256"] == hashlib.sha256(PICTURE).hexdigest()
    assert download["content_type"].startswith("image/jpeg")


async def test_a_managers_text_and_document_reach_the_client_and_statuses_move_forward(
    whatsapp: WhatsAppNumber,
) -> None:
    sandbox, wa_id = whatsapp.sandbox, "5511900000102"
    conversation_id = await open_chat(whatsapp, wa_id)

    hook = await sandbox.manager_writes(conversation_id, "Yes, it ships today")
    [text] = await sent_once(whatsapp, wa_id)
    assert (text["type"], text["body"]["text"]["body"]) == ("text", "Yes, it ships today")
    assert [s["status"] for s in await kommo_statuses_of(sandbox, hook["kommo_msgid"])] == [DELIVERED]

    pdf = b"%PDF-1.4\n" + b"invoice line\n" * 500 + b"%%EOF\n"
    attachment = await sandbox.kommo_attachment("invoice.pdf", pdf, "application/pdf")
    message = {"type": "file", "media": attachment["url"], "file_name": "invoice.pdf", "file_size": len(pdf)}
    document_hook = await sandbox.manager_sends(conversation_id, message)
    _, document = await sent_once(whatsapp, wa_id, 2)
    assert document["type"] == "document" and document["body"]["document"]["filename"] == "invoice.pdf"
    assert [s["status"] for s in await kommo_statuses_of(sandbox, document_hook["kommo_msgid"])] == [DELIVERED]
    got = await file_whatsapp_got(whatsapp, wa_id, 1)
    assert (got["sha256"], got["file_size"], got["mime_type"]) == (
        hashlib.sha256(pdf).hexdigest(),
        len(pdf),
        "application/pdf",
    )

    await whatsapp.client_reads(wa_id)
    for kommo_msgid in (hook["kommo_msgid"], document_hook["kommo_msgid"]):
        assert [s["status"] for s in await kommo_statuses_of(sandbox, kommo_msgid, 2)] == [DELIVERED, READ]


async def test_statuses_arriving_out_of_order_end_at_read(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, "5511900000103"
    conversation_id = await open_chat(whatsapp, wa_id)
    await whatsapp.client_online(wa_id, False)  # WhatsApp says "sent" only, until the phone is back

    hook = await sandbox.manager_writes(conversation_id, "Your invoice is attached above")
    [sent] = await sent_once(whatsapp, wa_id)
    statuses = [(sent["id"], "read"), (sent["id"], "delivered"), (sent["id"], "sent"), (sent["id"], "read")]
    assert await whatsapp.meta_posts_statuses(wa_id, statuses) == 200

    posted = await kommo_statuses_of(sandbox, hook["kommo_msgid"])
    assert [s["status"] for s in posted] == [READ]


async def test_a_failure_after_200_outside_whatsapps_window_ends_as_an_error_saying_a_template_is_needed(
    whatsapp: WhatsAppNumber,
) -> None:
    sandbox, wa_id = whatsapp.sandbox, "5511900000104"
    conversation_id = await open_chat(whatsapp, wa_id)
    await whatsapp.whatsapp_window_age(wa_id, OUTSIDE_THE_WINDOW)  # the bridge still thinks it is open

    hook = await sandbox.manager_writes(conversation_id, "Are you still there?")
    [sent] = await sent_once(whatsapp, wa_id)

    async def failed_at_whatsapp() -> bool:
        return bool((await whatsapp.sent_to(wa_id))[0]["status"] == "failed")

    await wait_for(failed_at_whatsapp, timeout=30, what="WhatsApp's failed status")
    [status] = await kommo_statuses_of(sandbox, hook["kommo_msgid"])
    assert (status["status"], status["error_code"]) == (FAILED, 905)
    assert "24 hours" in status["error"] and "template" in status["error"]
    assert sent["status"] in ("accepted", "failed")  # Graph answered 200 first


async def test_free_text_outside_the_window_is_stopped_before_sending_and_a_client_message_reopens_it(
    whatsapp: WhatsAppNumber,
) -> None:
    sandbox, wa_id = whatsapp.sandbox, "5511900000105"
    conversation_id = await open_chat(whatsapp, wa_id)
    await whatsapp.bridge_window_age(conversation_id, OUTSIDE_THE_WINDOW)
    await whatsapp.whatsapp_window_age(wa_id, OUTSIDE_THE_WINDOW)

    stopped = await sandbox.manager_writes(conversation_id, "Hello again after two days")
    [status] = await kommo_statuses_of(sandbox, stopped["kommo_msgid"])
    assert (status["status"], status["error_code"]) == (FAILED, 905)
    assert "template" in status["error"]
    assert await whatsapp.sent_to(wa_id) == []  # never reached WhatsApp

    await whatsapp.client_writes(wa_id, "I'm back")
    await wait_for(lambda: _count_incoming(whatsapp, wa_id, 2), timeout=60, what="the client's second message in Kommo")
    reopened = await sandbox.manager_writes(conversation_id, "Welcome back")
    [sent] = await sent_once(whatsapp, wa_id)
    assert sent["body"]["text"]["body"] == "Welcome back"
    assert [s["status"] for s in await kommo_statuses_of(sandbox, reopened["kommo_msgid"])] == [DELIVERED]


async def test_a_manager_typing_shows_on_the_clients_last_message(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, "5511900000106"
    conversation_id = await open_chat(whatsapp, wa_id)

    await sandbox.manager_types(conversation_id)

    async def shown() -> bool:
        return await whatsapp.typing_shown(wa_id)

    await wait_for(shown, timeout=30, what="typing shown to the WhatsApp client")


async def _count_incoming(whatsapp: WhatsAppNumber, wa_id: str, count: int) -> bool:
    return len(await whatsapp.incoming_from(wa_id)) >= count


async def test_templates_are_mirrored_into_kommo_with_their_review_status(whatsapp: WhatsAppNumber) -> None:
    body = "Hi {{1}}, your order {{2}} ships today."
    made = {name: await whatsapp.business_has_template(name, body) for name in ("order_ready", "promo", "paused_one")}
    for name, event in (("order_ready", "APPROVED"), ("promo", "REJECTED"), ("paused_one", "APPROVED")):
        assert await whatsapp.meta_reviews(made[name], event) == 200
    assert await whatsapp.meta_reviews(made["paused_one"], "PAUSED") == 200

    expected = {"order_ready": "approved", "promo": "rejected", "paused_one": "paused"}

    async def mirrored() -> bool:
        statuses = {t["name"]: t.get("review_status") for t in await whatsapp.kommo_chat_templates()}
        return all(statuses.get(name) == status for name, status in expected.items())

    await wait_for(mirrored, timeout=60, what="the business's templates in Kommo with their review status")
    templates = [t for t in await whatsapp.kommo_chat_templates() if t["name"] in expected]
    assert len(templates) == 3  # each once, however many notifications came
    for template in templates:
        assert template["type"] == "waba"
        assert template["content"] == body
        assert template["external_id"].startswith(f"{whatsapp.business.waba_id}:")


async def approved_template_in_kommo(whatsapp: WhatsAppNumber, name: str, body: str) -> dict[str, Any]:
    """A template Meta approved, once Kommo shows it as approved (what a manager can pick)."""
    made = await whatsapp.business_has_template(name, body)
    assert await whatsapp.meta_reviews(made, "APPROVED") == 200
    found: list[dict[str, Any]] = []

    async def mirrored() -> bool:
        found[:] = [t for t in await whatsapp.kommo_chat_templates() if t["name"] == name]
        return bool(found) and found[0].get("review_status") == "approved"

    await wait_for(mirrored, timeout=60, what=f"template {name} approved in Kommo")
    return found[0]


def picked(template: dict[str, Any], *values: str) -> dict[str, Any]:
    """The hook's `template` when a manager sends a chat template with its parameters filled in."""
    params = [{"key": "{{" + str(i) + "}}", "value": value} for i, value in enumerate(values, start=1)]
    return {
        "id": template["id"],
        "external_id": template["external_id"],
        "content": template["content"],
        "params": params,
    }


def digits(phone: str) -> str:
    return "".join(c for c in phone if c.isdigit())


def body_parameters(sent: dict[str, Any]) -> list[str]:
    [body] = [c for c in sent["body"]["template"]["components"] if c["type"] == "body"]
    return [p["text"] for p in body["parameters"]]


async def test_a_managers_template_goes_outside_the_window_with_its_parameters(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, "5511900000107"
    template = await approved_template_in_kommo(whatsapp, "order_shipped", "Hi {{1}}, order {{2}} has shipped.")
    conversation_id = await open_chat(whatsapp, wa_id)
    await whatsapp.bridge_window_age(conversation_id, OUTSIDE_THE_WINDOW)
    await whatsapp.whatsapp_window_age(wa_id, OUTSIDE_THE_WINDOW)

    hook = await sandbox.manager_sends(conversation_id, {"template": picked(template, "Ana", "A-1001")})
    assert hook["body"]["message"]["message"]["text"] == "Hi Ana, order A-1001 has shipped."

    [sent] = await sent_once(whatsapp, wa_id)
    assert sent["type"] == "template"
    assert (sent["body"]["template"]["name"], sent["body"]["template"]["language"]["code"]) == (
        "order_shipped",
        "en_US",
    )
    assert body_parameters(sent) == ["Ana", "A-1001"]
    assert [s["status"] for s in await kommo_statuses_of(sandbox, hook["kommo_msgid"])] == [DELIVERED]


async def test_writing_first_to_a_new_number_opens_one_chat_where_the_answer_lands(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, "5511900000108"
    template = await approved_template_in_kommo(whatsapp, "first_contact", "Hello {{1}}, can we help with {{2}}?")
    await whatsapp.whatsapp_user(wa_id)

    # Free text cannot open a WhatsApp conversation: stopped before sending, in words that say so.
    refused_text = await sandbox.manager_writes_first("+55 11 90000-0108", {"text": "Hi there"})
    kommo_chat_id = refused_text["body"]["message"]["conversation"]["id"]
    assert "client_id" not in refused_text["body"]["message"]["conversation"]
    [status] = await kommo_statuses_of(sandbox, refused_text["kommo_msgid"])
    assert (status["status"], status["error_code"]) == (FAILED, 905) and "template" in status["error"]

    hook = await sandbox.manager_writes_first("+55 11 90000-0108", {"template": picked(template, "Rui", "your order")})
    assert hook["body"]["message"]["conversation"]["id"] == kommo_chat_id  # the same chat, still unbound
    [sent] = await sent_once(whatsapp, wa_id)
    assert sent["type"] == "template" and body_parameters(sent) == ["Rui", "your order"]
    assert [s["status"] for s in await kommo_statuses_of(sandbox, hook["kommo_msgid"])] == [DELIVERED]

    await whatsapp.client_writes(wa_id, "Yes, where is it?")
    await wait_for(lambda: _count_incoming(whatsapp, wa_id, 1), timeout=60, what="the client's answer in Kommo")
    [answer] = await whatsapp.incoming_from(wa_id)
    assert answer["kommo_chat_id"] == kommo_chat_id
    assert answer["payload"]["conversation_ref_id"] == kommo_chat_id
    assert answer["payload"]["sender"]["ref_id"] == hook["body"]["message"]["receiver"]["id"]
    chats = [c for c in await sandbox.kommo_chats() if digits(c["client"].get("phone", "")) == wa_id]
    assert [c["kommo_chat_id"] for c in chats] == [kommo_chat_id]  # one chat: Kommo's own, now ours too
    assert chats[0]["conversation_id"] == await whatsapp.conversation_of(wa_id)
    crm = await sandbox.crm()
    assert len([lead for lead in crm["leads"] if lead["chat_id"] == kommo_chat_id]) == 1

    await whatsapp.client_writes(wa_id, "Thanks")
    await wait_for(lambda: _count_incoming(whatsapp, wa_id, 2), timeout=60, what="the client's second message")
    second = (await whatsapp.incoming_from(wa_id))[1]
    assert second["kommo_chat_id"] == kommo_chat_id and "conversation_ref_id" not in second["payload"]


async def test_writing_first_through_a_telegram_bot_is_refused_as_unsupported(
    shared_sandbox: Sandbox, whatsapp: WhatsAppNumber
) -> None:
    telegram = await shared_sandbox.connection()
    assert telegram.source_external_id  # the hook names the Telegram bot's source
    hook = await shared_sandbox.manager_writes_first(
        "+55 11 90000-0109", {"text": "Hello from Kommo"}, source_external_id=telegram.source_external_id
    )
    [status] = await kommo_statuses_of(shared_sandbox, hook["kommo_msgid"])
    assert (status["status"], status["error_code"]) == (FAILED, 904)
    assert "cannot start a conversation" in status["error"]
    assert await whatsapp.sent_to("5511900000109") == []


async def test_the_numbers_kommo_source_offers_list_messages_and_a_bots_declares_nothing(
    shared_sandbox: Sandbox, whatsapp: WhatsAppNumber
) -> None:
    page = await settings_client(shared_sandbox)
    try:
        overview = await page.get("/settings/api/overview")
    finally:
        await page.aclose()
    assert overview.status_code == 200, overview.text
    channels = {c["id"]: c for c in overview.json()["channels"]}
    number = channels[whatsapp.connection_id]
    telegram = await shared_sandbox.connection()

    async def sources() -> dict[str, dict[str, Any]]:
        return {s["external_id"]: s for s in (await shared_sandbox.crm())["sources"]}

    async def both_synced() -> bool:
        found = await sources()
        return number["source_external_id"] in found and telegram.source_external_id in found

    await wait_for(both_synced, timeout=60, what="the number's and the bot's sources in Kommo")
    found = await sources()
    phone = whatsapp.business.phone_number_id
    assert found[number["source_external_id"]]["services"] == [
        {
            "type": "whatsapp",
            "params": {"waba": True, "is_supports_list_message": True},
            "pages": [{"id": phone, "name": number["name"], "link": "https://wa.me/15550001111"}],
        }
    ]
    assert found[telegram.source_external_id]["services"] == []
