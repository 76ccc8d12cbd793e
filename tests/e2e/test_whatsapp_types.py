"""Every kind of WhatsApp message both ways, and every WhatsApp status, end to end (five services as
processes, against the Kommo and WhatsApp Cloud emulators), asserting what amojo and Graph actually got.

Client → Kommo: each type a client can send arrives as the exact amojo `new_message` (files through the
bridge's signed links, Kommo's download giving back the client's bytes), reactions as `/react`, edits and
deleted messages as `edit_message`, and what the bridge does not carry (a `system` note) as nothing.
Manager → client: each Kommo message type becomes the exact Graph call, then Kommo's "delivered"; quotes
become replies, reactions WhatsApp reactions, and an edit (which WhatsApp does not let a business make) a
failed status saying so.
Statuses: what Kommo shows for WhatsApp's sent, delivered, read, played and failed (131026 and others),
once each.

The tests share one stack and one connected number; each uses clients (wa_ids) of its own."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from libs.messengers.whatsapp.inbound import DELETED_NOTE, UNSUPPORTED_NOTE
from tests.e2e.sandbox import Sandbox
from tests.e2e.test_whatsapp import file_whatsapp_got, kommo_statuses_of, open_chat, sent_once
from tests.e2e.whatsapp_side import WhatsAppNumber, connect_number
from tests.support import wait_for

pytestmark = pytest.mark.e2e

DELIVERED, READ, FAILED = 1, 2, -1
BUSINESS_PHONE = "15550004444"
TIMEOUT = 60

# Small files of each kind, with the first bytes their formats start with.
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40 + b"\xff\xd9"
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 60
MP3 = b"ID3\x04\x00" + bytes(range(255, -1, -1)) * 50
OGG = b"OggS\x00\x02" + bytes(range(256)) * 30
PDF = b"%PDF-1.4\n" + b"order line\n" * 400 + b"%%EOF\n"
WEBP = b"RIFF\x00\x10\x00\x00WEBPVP8 " + bytes(range(256)) * 16


def client(number: int) -> str:
    """A wa_id of this module's clients (other modules use other ranges)."""
    return f"55119000{number:05d}"


@pytest.fixture(scope="module")
async def whatsapp(shared_sandbox: Sandbox) -> AsyncIterator[WhatsAppNumber]:
    yield await connect_number(shared_sandbox, "Sandbox Types WA", BUSINESS_PHONE)


@pytest.fixture(autouse=True)
async def nothing_dead_lettered(whatsapp: WhatsAppNumber) -> AsyncIterator[None]:
    """Whatever a test sends, no event of it ends among the dead letters (a refusal the bridge did not
    expect would, quietly)."""
    sandbox = whatsapp.sandbox
    before = (await sandbox.stream_counts())["DEAD_LETTERS"]
    yield
    await wait_for(sandbox.pipeline_idle, timeout=TIMEOUT, what="the pipeline idle")
    assert (await sandbox.stream_counts())["DEAD_LETTERS"] == before, "an event was dead-lettered"


async def control(whatsapp: WhatsAppNumber, route: str, body: dict[str, Any], method: str = "POST") -> dict[str, Any]:
    """A call of the WhatsApp emulator's control API (the users' side, faults)."""
    sandbox = whatsapp.sandbox
    response = await sandbox.http.request(method, f"{sandbox.stack.whatsapp_url}/_emulator/{route}", json=body)
    assert response.status_code < 300, response.text
    result: dict[str, Any] = response.json()
    return result


def with_file(message: dict[str, Any], data: bytes, mime_type: str, filename: str = "") -> dict[str, Any]:
    file = {"data_base64": base64.b64encode(data).decode(), "mime_type": mime_type}
    if filename:
        file["filename"] = filename
    return {**message, "file": file}


async def incoming(whatsapp: WhatsAppNumber, wa_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The client's messages as amojo received them, oldest first, once there are `count`."""

    async def arrived() -> bool:
        return len(await whatsapp.incoming_from(wa_id)) >= count

    await wait_for(arrived, timeout=TIMEOUT, what=f"{count} message(s) of WhatsApp client {wa_id} in Kommo")
    return await whatsapp.incoming_from(wa_id)


async def kommo_message(sandbox: Sandbox, kommo_msgid: str) -> dict[str, Any]:
    [found] = [m for m in await sandbox.kommo_messages() if m["kommo_msgid"] == kommo_msgid]
    return found


async def kommo_downloaded(sandbox: Sandbox, msgid: str) -> dict[str, Any]:
    """Kommo's one download of the file of a message it accepted (through the bridge's signed link)."""
    downloads: list[dict[str, Any]] = []

    async def done() -> bool:
        downloads[:] = await sandbox.kommo_media_downloads(msgid)
        return bool(downloads) and all(d["done"] for d in downloads)

    await wait_for(done, timeout=TIMEOUT, what=f"Kommo's download of the file of {msgid}")
    [download] = downloads
    return download


# ---------------------------------------------------------------------------------------------------------
# Client → Kommo


@dataclass(frozen=True)
class Inbound:
    """A client's message (as the emulator's `users/messages` takes it) and the `message` amojo must get;
    for a file, the `media` link aside, and the bytes Kommo must download through it."""

    message: dict[str, Any]
    kommo: dict[str, Any]
    file: bytes = b""
    mime_type: str = ""
    file_name: str = ""


INBOUND: dict[str, Inbound] = {
    "text": Inbound(
        {"type": "text", "text": {"body": "Is the blue one in stock?"}},
        {"type": "text", "text": "Is the blue one in stock?"},
    ),
    "image_with_caption": Inbound(
        with_file({"type": "image", "image": {"caption": "this one"}}, JPEG, "image/jpeg"),
        {"type": "picture", "text": "this one", "file_name": "picture.jpg", "file_size": len(JPEG)},
        JPEG,
        "image/jpeg",
        "picture.jpg",
    ),
    "video": Inbound(
        with_file({"type": "video", "video": {}}, MP4, "video/mp4"),
        {"type": "video", "file_name": "video.mp4", "file_size": len(MP4)},
        MP4,
        "video/mp4",
        "video.mp4",
    ),
    "audio": Inbound(
        with_file({"type": "audio", "audio": {"voice": False}}, MP3, "audio/mpeg"),
        {"type": "audio", "file_name": "audio.mp3", "file_size": len(MP3)},
        MP3,
        "audio/mpeg",
        "audio.mp3",
    ),
    "voice_note": Inbound(
        with_file({"type": "audio", "audio": {"voice": True}}, OGG, "audio/ogg; codecs=opus"),
        {"type": "voice", "file_name": "voice.ogg", "file_size": len(OGG)},
        OGG,
        "audio/ogg",
        "voice.ogg",
    ),
    "document_with_filename": Inbound(
        with_file({"type": "document", "document": {"caption": "my order"}}, PDF, "application/pdf", "order-77.pdf"),
        {"type": "file", "text": "my order", "file_name": "order-77.pdf", "file_size": len(PDF)},
        PDF,
        "application/pdf",
        "order-77.pdf",
    ),
    "sticker": Inbound(
        with_file({"type": "sticker", "sticker": {"animated": False}}, WEBP, "image/webp"),
        {"type": "sticker"},
        WEBP,
        "image/webp",
    ),
    "location_with_name_and_address": Inbound(
        {
            "type": "location",
            "location": {"latitude": -23.5614, "longitude": -46.6559, "name": "Shop", "address": "Av. Paulista 1000"},
        },
        {"type": "location", "text": "Shop, Av. Paulista 1000", "location": {"lon": -46.6559, "lat": -23.5614}},
    ),
    "one_contact": Inbound(
        {
            "type": "contacts",
            "contacts": [
                {
                    "name": {"formatted_name": "Bob Stone", "first_name": "Bob", "last_name": "Stone"},
                    "phones": [{"phone": "+1 555 010 0200", "wa_id": "15550100200", "type": "CELL"}],
                }
            ],
        },
        {"type": "contact", "contact": {"name": "Bob Stone", "phone": "+1 555 010 0200"}},
    ),
    "several_contacts": Inbound(
        {
            "type": "contacts",
            "contacts": [
                {
                    "name": {"formatted_name": "Bob Stone", "first_name": "Bob"},
                    "phones": [{"phone": "+1 555 010 0200"}],
                },
                {
                    "name": {"first_name": "Carol", "last_name": "Ng"},
                    "phones": [{"phone": "+1 555 010 0300", "type": "HOME"}, {"phone": "+1 555 010 0301"}],
                },
            ],
        },
        {"type": "text", "text": "[contacts]\nBob Stone: +1 555 010 0200\nCarol Ng: +1 555 010 0300, +1 555 010 0301"},
    ),
    "interactive_button_reply": Inbound(
        {
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": "ship-now", "title": "Ship it"}},
        },
        {"type": "text", "text": "Ship it", "callback_data": "ship-now"},
    ),
    "interactive_list_reply": Inbound(
        {
            "type": "interactive",
            "interactive": {
                "type": "list_reply",
                "list_reply": {"id": "size-m", "title": "Medium", "description": "chest 96-101 cm"},
            },
        },
        {"type": "text", "text": "Medium", "callback_data": "size-m"},
    ),
    "template_quick_reply_button": Inbound(
        {"type": "button", "button": {"payload": "STOP_PROMOS", "text": "Stop promotions"}},
        {"type": "text", "text": "Stop promotions", "callback_data": "STOP_PROMOS"},
    ),
    "order": Inbound(
        {
            "type": "order",
            "order": {
                "catalog_id": "310000000000001",
                "text": "gift wrap, please",
                "product_items": [
                    {"product_retailer_id": "SKU-1", "quantity": 2, "item_price": 9.99, "currency": "EUR"},
                    {"product_retailer_id": "SKU-7", "quantity": 1, "item_price": 25, "currency": "EUR"},
                ],
            },
        },
        {"type": "text", "text": "[order]\n2 × SKU-1 (9.99 EUR)\n1 × SKU-7 (25 EUR)\ngift wrap, please"},
    ),
    "unsupported": Inbound(
        {
            "type": "unsupported",
            "unsupported": {"type": "poll"},
            "errors": [
                {
                    "code": 131051,
                    "title": "Message type unknown",
                    "message": "Message type unknown",
                    "error_data": {"details": "Message type is currently not supported."},
                }
            ],
        },
        {"type": "text", "text": "[unsupported WhatsApp message: poll]"},
    ),
    "unsupported_of_no_named_kind": Inbound(
        {"type": "unsupported", "errors": [{"code": 131051, "title": "Message type unknown"}]},
        {"type": "text", "text": UNSUPPORTED_NOTE},
    ),
}


@pytest.mark.parametrize("kind", list(INBOUND))
async def test_each_kind_of_client_message_reaches_kommo_as_amojo_expects(whatsapp: WhatsAppNumber, kind: str) -> None:
    case, wa_id = INBOUND[kind], client(100 + list(INBOUND).index(kind))
    sandbox = whatsapp.sandbox
    sent = await whatsapp.client_sends(wa_id, case.message)

    [got] = await incoming(whatsapp, wa_id)
    message = dict(got["message"])
    link = message.pop("media", "")
    assert message == case.kommo
    assert got["payload"]["message"] == got["message"] and "reply_to" not in got["payload"]
    assert got["payload"]["sender"]["profile"] == {"phone": f"+{wa_id}"}
    if not case.file:
        assert not link
        return
    # The file comes through the bridge's own signed link (never Graph's URL, never the access token),
    # and Kommo's download of it gives back the client's very bytes.
    media_id = sent["body"][case.message["type"]]["id"]
    assert link.startswith(f"{sandbox.stack.public_url}/media/v1/"), link
    assert whatsapp.business.access_token not in link and media_id not in link
    download = await kommo_downloaded(sandbox, got["msgid"])
    assert (download["status"], download["size"]) == (200, len(case.file))
    assert download["sha256"] == hashlib.sha256(case.file).hexdigest()
    assert download["content_type"].split(";")[0] == case.mime_type
    if case.file_name:
        assert download["file_name"] == case.file_name


async def test_a_quote_reaches_kommo_as_reply_to_the_quoted_message(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, client(200)
    question_at_whatsapp = await whatsapp.client_writes(wa_id, "Do you have it in blue?")
    [question] = await incoming(whatsapp, wa_id)
    hook = await sandbox.manager_writes(question["conversation_id"], "Yes. Which size?")
    [answer] = await sent_once(whatsapp, wa_id)
    await kommo_statuses_of(sandbox, hook["kommo_msgid"])  # the answer's wamid is known to the bridge now

    quoting_manager = await whatsapp.client_sends(
        wa_id, {"type": "text", "text": {"body": "M, please"}, "reply_to": answer["id"]}
    )
    assert quoting_manager["body"]["context"] == {"from": BUSINESS_PHONE, "id": answer["id"]}
    await whatsapp.client_sends(
        wa_id, {"type": "text", "text": {"body": "(blue, as I said)"}, "reply_to": question_at_whatsapp["id"]}
    )

    _, to_manager, to_own = await incoming(whatsapp, wa_id, 3)
    assert to_manager["message"] == {"type": "text", "text": "M, please"}
    assert to_manager["payload"]["reply_to"] == {"message": {"id": hook["kommo_msgid"]}}
    assert to_own["message"] == {"type": "text", "text": "(blue, as I said)"}
    assert to_own["payload"]["reply_to"] == {"message": {"msgid": question["msgid"]}}


async def test_a_clients_reaction_added_and_removed_reaches_kommo(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, client(201)
    await whatsapp.client_writes(wa_id, "Where is my parcel?")
    [question] = await incoming(whatsapp, wa_id)
    conversation_id = question["conversation_id"]
    hook = await sandbox.manager_writes(conversation_id, "It left the warehouse today")
    [answer] = await sent_once(whatsapp, wa_id)
    await kommo_statuses_of(sandbox, hook["kommo_msgid"])
    phone_number_id = whatsapp.business.phone_number_id

    async def reactions(count: int) -> list[dict[str, Any]]:
        async def arrived() -> bool:
            return len(await sandbox.kommo_reactions(conversation_id)) >= count

        await wait_for(arrived, timeout=TIMEOUT, what=f"{count} reaction call(s) at Kommo")
        return await sandbox.kommo_reactions(conversation_id)

    body = {"phone_number_id": phone_number_id, "user": wa_id, "message_id": answer["id"]}
    await control(whatsapp, "users/react", {**body, "emoji": "👍"})
    [react] = await reactions(1)
    # WhatsApp's removal names no emoji ("" = whatever the client's reaction was): unreact says none.
    await control(whatsapp, "users/react", {**body, "emoji": ""})
    _, unreact = await reactions(2)

    user = {"id": question["payload"]["sender"]["id"]}
    target = {"conversation_id": conversation_id, "id": hook["kommo_msgid"], "user": user}
    assert react["body"] == {**target, "type": "react", "emoji": "👍"}
    assert unreact["body"] == {**target, "type": "unreact"}


async def test_a_clients_edit_changes_the_message_in_kommo(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, client(202)
    typo_at_whatsapp = await whatsapp.client_writes(wa_id, "I ned two")
    [typo] = await incoming(whatsapp, wa_id)
    edit = {
        "phone_number_id": whatsapp.business.phone_number_id,
        "user": wa_id,
        "message_id": typo_at_whatsapp["id"],
        "message": {"type": "text", "text": {"body": "I need two"}},
    }
    await control(whatsapp, "users/edit", edit)

    stored = await edited_in_kommo(sandbox, typo["kommo_msgid"])
    assert stored["message"] == {"type": "text", "text": "I need two"}
    assert stored["edits"] == [
        {"msgid": typo["msgid"], "conversation_id": typo["conversation_id"], "message": stored["message"]}
    ]
    assert len(await whatsapp.incoming_from(wa_id)) == 1  # changed, not a new message


async def test_a_message_the_client_deleted_shows_as_deleted_in_kommo(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, client(203)
    wrong_at_whatsapp = await whatsapp.client_writes(wa_id, "My address is Rua Errada 1")
    [wrong] = await incoming(whatsapp, wa_id)
    revoke = {
        "phone_number_id": whatsapp.business.phone_number_id,
        "user": wa_id,
        "message_id": wrong_at_whatsapp["id"],
    }
    await control(whatsapp, "users/revoke", revoke)

    stored = await edited_in_kommo(sandbox, wrong["kommo_msgid"])
    assert stored["message"] == {"type": "text", "text": DELETED_NOTE}
    assert stored["edits"] == [
        {"msgid": wrong["msgid"], "conversation_id": wrong["conversation_id"], "message": stored["message"]}
    ]


async def edited_in_kommo(sandbox: Sandbox, kommo_msgid: str) -> dict[str, Any]:
    async def edited() -> bool:
        return bool((await kommo_message(sandbox, kommo_msgid))["edits"])

    await wait_for(edited, timeout=TIMEOUT, what=f"an edit of {kommo_msgid} at Kommo")
    return await kommo_message(sandbox, kommo_msgid)


async def test_a_system_note_publishes_nothing_and_the_message_after_it_arrives(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, client(204)
    await wait_for(sandbox.pipeline_idle, timeout=TIMEOUT, what="the pipeline idle")
    before = await sandbox.stream_counts()
    note = {
        "type": "system",
        "system": {"body": "Customer's security code changed", "type": "customer_identity_changed", "identity": "x1"},
    }
    batch = {
        "phone_number_id": whatsapp.business.phone_number_id,
        "user": {"name": "Client System", "wa_id": wa_id},
        "messages": [note, {"type": "text", "text": {"body": "after the note"}}],
    }
    result = await control(whatsapp, "users/messages", batch)
    assert result["delivery"]["status"] == 200, result["delivery"]

    await incoming(whatsapp, wa_id)
    await wait_for(sandbox.pipeline_idle, timeout=TIMEOUT, what="the pipeline idle")
    assert [m["message"] for m in await whatsapp.incoming_from(wa_id)] == [{"type": "text", "text": "after the note"}]
    after = await sandbox.stream_counts()
    assert after["INBOUND"] - before["INBOUND"] == 1  # the text only: the note was never published


# ---------------------------------------------------------------------------------------------------------
# Manager → client


@dataclass(frozen=True)
class Outbound:
    """A manager's message in Kommo (hook fields; with an attachment made of `file` when given) and the
    Graph message WhatsApp must get: its type and object (for a file: besides `link`/`id`)."""

    kommo: dict[str, Any]
    graph_type: str
    graph: Any
    file: tuple[str, bytes, str] | None = None  # name, bytes, MIME type


OUTBOUND: dict[str, Outbound] = {
    "text": Outbound(
        {"type": "text", "text": "It ships today"}, "text", {"body": "It ships today", "preview_url": False}
    ),
    "text_with_link": Outbound(
        {"type": "text", "text": "Track it at https://track.example.com/A-1001"},
        "text",
        {"body": "Track it at https://track.example.com/A-1001", "preview_url": True},
    ),
    "picture": Outbound(
        {"type": "picture", "text": "the blue one"},
        "image",
        {"caption": "the blue one"},
        ("blue.jpg", JPEG, "image/jpeg"),
    ),
    "video": Outbound({"type": "video"}, "video", {}, ("unboxing.mp4", MP4, "video/mp4")),
    "file": Outbound(
        {"type": "file"}, "document", {"filename": "invoice.pdf"}, ("invoice.pdf", PDF, "application/pdf")
    ),
    "voice": Outbound({"type": "voice"}, "audio", {"voice": True}, ("note.ogg", OGG, "audio/ogg")),
    "audio": Outbound({"type": "audio"}, "audio", {}, ("jingle.mp3", MP3, "audio/mpeg")),
    "sticker": Outbound({"type": "sticker"}, "sticker", {}, ("thanks.webp", WEBP, "image/webp")),
    "location": Outbound(
        {"type": "location", "location": {"lat": -23.5614, "lon": -46.6559}},
        "location",
        {"latitude": -23.5614, "longitude": -46.6559},
    ),
    "contact": Outbound(
        {"type": "contact", "contact": {"name": "Support Desk", "phone": "+15550100900"}},
        "contacts",
        [
            {
                "name": {"formatted_name": "Support Desk", "first_name": "Support Desk"},
                "phones": [{"phone": "+15550100900", "type": "CELL"}],
            }
        ],
    ),
}


@pytest.mark.parametrize("kind", list(OUTBOUND))
async def test_each_kind_of_manager_message_is_the_graph_call_whatsapp_expects(
    whatsapp: WhatsAppNumber, kind: str
) -> None:
    case, wa_id = OUTBOUND[kind], client(300 + list(OUTBOUND).index(kind))
    sandbox = whatsapp.sandbox
    conversation_id = await open_chat(whatsapp, wa_id)
    message = dict(case.kommo)
    if case.file is not None:
        name, data, mime_type = case.file
        attachment = await sandbox.kommo_attachment(name, data, mime_type)
        message.update({"media": attachment["url"], "file_name": name, "file_size": len(data)})

    hook = await sandbox.manager_sends(conversation_id, message)
    assert hook["status_code"] == 200, hook
    assert [s["status"] for s in await kommo_statuses_of(sandbox, hook["kommo_msgid"])] == [DELIVERED]

    [sent] = await whatsapp.sent_to(wa_id)
    body = dict(sent["body"])
    sent_object = body.pop(case.graph_type)
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": wa_id,
        "type": case.graph_type,
    }
    if case.file is None:
        assert sent_object == case.graph
        return
    name, data, mime_type = case.file
    media = {k: v for k, v in sent_object.items() if k not in ("link", "id", "fetched")}
    assert media == case.graph
    assert ("link" in sent_object) != ("id" in sent_object)
    got = await file_whatsapp_got(whatsapp, wa_id, 0)
    assert (got["sha256"], got["file_size"], got["mime_type"]) == (
        hashlib.sha256(data).hexdigest(),
        len(data),
        mime_type,
    )


async def test_a_manager_quote_is_a_whatsapp_reply_to_the_clients_message(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, client(400)
    question_at_whatsapp = await whatsapp.client_writes(wa_id, "What is the warranty?")
    [question] = await incoming(whatsapp, wa_id)

    hook = await sandbox.manager_replies(question["conversation_id"], "Two years.", quoting=question["kommo_msgid"])
    [sent] = await sent_once(whatsapp, wa_id)
    assert sent["body"]["context"] == {"message_id": question_at_whatsapp["id"]}
    assert sent["body"]["text"] == {"body": "Two years.", "preview_url": False}
    assert [s["status"] for s in await kommo_statuses_of(sandbox, hook["kommo_msgid"])] == [DELIVERED]


async def test_a_manager_reaction_is_the_business_reaction_at_whatsapp(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, client(401)
    thanks_at_whatsapp = await whatsapp.client_writes(wa_id, "Thank you so much!")
    [thanks] = await incoming(whatsapp, wa_id)

    await sandbox.manager_reacts(thanks["kommo_msgid"], "❤️")
    [reaction] = await sent_once(whatsapp, wa_id)
    await sandbox.manager_reacts(thanks["kommo_msgid"], "❤️", removed=True)
    _, removal = await sent_once(whatsapp, wa_id, 2)

    for sent, emoji in ((reaction, "❤️"), (removal, "")):
        assert sent["body"] == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": wa_id,
            "type": "reaction",
            "reaction": {"message_id": thanks_at_whatsapp["id"], "emoji": emoji},
        }


async def test_a_manager_edit_is_refused_in_a_terminal_status_saying_whatsapp_cannot_edit(
    whatsapp: WhatsAppNumber,
) -> None:
    sandbox, wa_id = whatsapp.sandbox, client(402)
    conversation_id = await open_chat(whatsapp, wa_id)
    hook = await sandbox.manager_writes(conversation_id, "It is 10 EUR.")
    await kommo_statuses_of(sandbox, hook["kommo_msgid"])

    edited = await sandbox.manager_edits(hook["kommo_msgid"], "It is 12 EUR, sorry.")
    assert edited["status_code"] == 200, edited
    delivered, refused = await kommo_statuses_of(sandbox, hook["kommo_msgid"], 2)
    assert delivered["status"] == DELIVERED
    # What Kommo now shows never reached the client: the manager reads why, and what to do instead.
    assert (refused["status"], refused["error_code"]) == (FAILED, 905)
    assert refused["error"].startswith("Not changed: WhatsApp does not let a business edit"), refused
    [sent] = await whatsapp.sent_to(wa_id)  # the first text only: Graph has no edit for a business
    assert sent["body"]["text"]["body"] == "It is 10 EUR."

    # The client reads the original text: recorded, never posted over the refusal (an error is terminal).
    assert await whatsapp.client_reads(wa_id) == [sent["id"]]
    await wait_for(sandbox.pipeline_idle, timeout=TIMEOUT, what="the read receipt handled")
    assert [s["status"] for s in await kommo_statuses_of(sandbox, hook["kommo_msgid"], 2)] == [DELIVERED, FAILED]


# ---------------------------------------------------------------------------------------------------------
# Statuses


async def test_sent_shows_nothing_new_in_kommo_then_delivered_then_read(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, client(500)
    conversation_id = await open_chat(whatsapp, wa_id)
    await whatsapp.client_online(wa_id, False)  # WhatsApp says "sent" only, until the phone is back

    hook = await sandbox.manager_writes(conversation_id, "Your order is packed")

    async def sent_at_whatsapp() -> bool:
        return [m["statuses"] for m in await whatsapp.sent_to(wa_id)] == [["sent"]]

    await wait_for(sent_at_whatsapp, timeout=TIMEOUT, what="WhatsApp's sent status")
    await wait_for(sandbox.pipeline_idle, timeout=TIMEOUT, what="the pipeline idle")
    assert (await sandbox.kommo_statuses()).get(hook["kommo_msgid"], []) == []  # "sent" is Kommo's default

    await whatsapp.client_online(wa_id, True)
    assert [s["status"] for s in await kommo_statuses_of(sandbox, hook["kommo_msgid"])] == [DELIVERED]
    await whatsapp.client_reads(wa_id)
    assert [s["status"] for s in await kommo_statuses_of(sandbox, hook["kommo_msgid"], 2)] == [DELIVERED, READ]
    assert [m["statuses"] for m in await whatsapp.sent_to(wa_id)] == [["sent", "delivered", "read"]]


async def test_a_voice_note_played_is_read_in_kommo(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, client(501)
    conversation_id = await open_chat(whatsapp, wa_id)
    attachment = await sandbox.kommo_attachment("note.ogg", OGG, "audio/ogg")
    message = {"type": "voice", "media": attachment["url"], "file_name": "note.ogg", "file_size": len(OGG)}
    hook = await sandbox.manager_sends(conversation_id, message)
    assert [s["status"] for s in await kommo_statuses_of(sandbox, hook["kommo_msgid"])] == [DELIVERED]

    [voice] = await whatsapp.sent_to(wa_id)
    await control(whatsapp, "users/play", {"message_id": voice["id"]})
    assert [s["status"] for s in await kommo_statuses_of(sandbox, hook["kommo_msgid"], 2)] == [DELIVERED, READ]
    assert (await whatsapp.sent_to(wa_id))[0]["statuses"] == ["sent", "delivered", "played"]


async def test_undeliverable_131026_is_kommos_904(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, client(502)
    conversation_id = await open_chat(whatsapp, wa_id)
    await control(whatsapp, f"users/{wa_id}", {"reachable": False}, method="PATCH")  # e.g. left WhatsApp

    hook = await sandbox.manager_writes(conversation_id, "Hello?")
    [status] = await kommo_statuses_of(sandbox, hook["kommo_msgid"])
    assert (status["status"], status["error_code"]) == (FAILED, 904)
    assert "cannot deliver to this number" in status["error"], status
    [sent] = await whatsapp.sent_to(wa_id)
    assert (sent["statuses"], sent["error_code"]) == (["failed"], 131026)


async def test_another_failure_is_kommos_905_in_whatsapps_words(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, client(503)
    conversation_id = await open_chat(whatsapp, wa_id)
    details = "This message was not delivered to maintain healthy ecosystem engagement."
    fault = {"code": 131049, "title": "Message not delivered", "details": details, "mode": "failed_status", "to": wa_id}
    await control(whatsapp, "errors", fault)

    hook = await sandbox.manager_writes(conversation_id, "Our new collection is here")
    [status] = await kommo_statuses_of(sandbox, hook["kommo_msgid"])
    assert (status["status"], status["error_code"]) == (FAILED, 905)
    assert details in status["error"] and status["error"].startswith("Not delivered"), status


async def test_a_status_meta_sends_twice_is_posted_once(whatsapp: WhatsAppNumber) -> None:
    sandbox, wa_id = whatsapp.sandbox, client(504)
    conversation_id = await open_chat(whatsapp, wa_id)
    await whatsapp.client_online(wa_id, False)
    hook = await sandbox.manager_writes(conversation_id, "See you tomorrow")
    [sent] = await sent_once(whatsapp, wa_id)

    delivered = (sent["id"], "delivered")
    assert await whatsapp.meta_posts_statuses(wa_id, [delivered, delivered]) == 200
    assert await whatsapp.meta_posts_statuses(wa_id, [delivered]) == 200  # and once more, a retry

    await wait_for(sandbox.pipeline_idle, timeout=TIMEOUT, what="the pipeline idle")
    assert [s["status"] for s in await kommo_statuses_of(sandbox, hook["kommo_msgid"])] == [DELIVERED]
