"""Kommo chat webhooks (§9): parsing into our proto, and the emulator's signed manager-reply hooks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from kommo_bridge.events.v1 import content_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.errors import BadRequestError, NotFoundError
from libs.kommo.client import AmojoClient
from libs.kommo.emulator import AmojoState, create_amojo_emulator
from libs.kommo.hooks import parse_chat_hook
from libs.kommo.payloads import MessageBody, NewMessage, Participant
from libs.kommo.signing import hook_signature, verify_hook_signature

SECRET = "f2d7f8704eff95087ed45b23ba99c0b5aac8278e"
CHANNEL_ID = "344a5002-f8ca-454d-af3d-396180102ac7"
ACCOUNT_ID = "52e591f7-c98f-4255-8495-827210138c81"
SCOPE_ID = f"{CHANNEL_ID}_{ACCOUNT_ID}"

# The v2 message hook from the RU step-by-step page (§9), picture with a caption.
PICTURE_HOOK: dict[str, Any] = {
    "account_id": ACCOUNT_ID,
    "time": 1639572261,
    "message": {
        "receiver": {
            "id": "2ed64e26-70a1-4857-8382-bb066a076219",
            "phone": "79161234567",
            "email": "example.client@example.com",
            "client_id": "my_int-1376265f-86df-4c49-a0c3-a4816df41af8",
        },
        "sender": {"id": "76fc2bea-902f-425c-9a3d-dcdac4766090"},
        "conversation": {"id": "8e4d4baa-9e6c-4a88-838a-5f62be227bdc", "client_id": "my_int-d5a421f7f218"},
        "source": {"external_id": "78001234567"},
        "timestamp": 1639572260,
        "msec_timestamp": 1639572260980,
        "message": {
            "id": "0371a0ff-b78a-4c7b-8538-a7d547e10692",
            "type": "picture",
            "text": "Текст сообщения Сделка #15926745",
            "markup": {"mode": "inline", "buttons": [[{"text": "Принять заказ"}, {"text": "Отменить заказ"}]]},
            "tag": "",
            "media": "https://amojo.amocrm.ru/attachments/image.jpg",
            "thumbnail": "https://amojo.amocrm.ru/attachments/image_320x200.jpg",
            "file_name": "",
            "file_size": 0,
            "template": {"id": 7103, "content": "Текст", "params": [{"key": "{{lead.id}}", "value": "15926745"}]},
        },
    },
}


def hook_with(**changes: Any) -> dict[str, Any]:
    """A deep copy of the picture hook, without its buttons, with `message.message` fields changed (None
    deletes)."""
    hook: dict[str, Any] = json.loads(json.dumps(PICTURE_HOOK))
    hook["message"]["message"].pop("markup")
    for key, value in changes.items():
        if value is None:
            hook["message"]["message"].pop(key, None)
        else:
            hook["message"]["message"][key] = value
    return hook


def raw(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


# -- parse_chat_hook


def test_picture_hook_becomes_outbound_message() -> None:
    body = raw(PICTURE_HOOK)
    event = parse_chat_hook(body, SCOPE_ID)

    assert event is not None
    assert event.account_id == ACCOUNT_ID
    assert event.scope_id == SCOPE_ID
    assert event.kommo_message_id == "0371a0ff-b78a-4c7b-8538-a7d547e10692"
    assert event.conversation_id == "my_int-d5a421f7f218"
    assert event.kommo_chat_id == "8e4d4baa-9e6c-4a88-838a-5f62be227bdc"
    assert event.receiver_client_id == "my_int-1376265f-86df-4c49-a0c3-a4816df41af8"
    assert event.sender_kommo_id == "76fc2bea-902f-425c-9a3d-dcdac4766090"
    assert event.sent_at_ms == 1639572260980
    assert event.raw == body
    assert event.content == content_pb2.Content(
        media=content_pb2.Media(
            kind=content_pb2.MEDIA_KIND_PICTURE,
            file_ref="https://amojo.amocrm.ru/attachments/image.jpg",
            # The buttons of a file follow as lines of its caption (libs/kommo/markup.py).
            caption="Текст сообщения Сделка #15926745\n\n• Принять заказ\n• Отменить заказ",
        )
    )


def test_text_hook() -> None:
    event = parse_chat_hook(raw(hook_with(type="text", text="Hello", media=None, thumbnail=None)), SCOPE_ID)
    assert event is not None
    assert event.content == content_pb2.Content(text=content_pb2.Text(body="Hello"))


@pytest.mark.parametrize(
    ("message_type", "kind"),
    [
        ("video", content_pb2.MEDIA_KIND_VIDEO),
        ("file", content_pb2.MEDIA_KIND_FILE),
        ("voice", content_pb2.MEDIA_KIND_VOICE),
        ("audio", content_pb2.MEDIA_KIND_AUDIO),
    ],
)
def test_media_hooks_keep_name_and_size(message_type: str, kind: content_pb2.MediaKind.ValueType) -> None:
    hook = hook_with(type=message_type, text="", file_name="report.pdf", file_size=12345, media_duration=9)
    event = parse_chat_hook(raw(hook), SCOPE_ID)
    assert event is not None
    media = event.content.media
    assert (media.kind, media.file_ref, media.file_name, media.size, media.duration_s) == (
        kind,
        "https://amojo.amocrm.ru/attachments/image.jpg",
        "report.pdf",
        12345,
        9,
    )


def test_sticker_hook() -> None:
    event = parse_chat_hook(raw(hook_with(type="sticker", text="", media="https://amojo.test/s.webp")), SCOPE_ID)
    assert event is not None
    assert event.content == content_pb2.Content(sticker=content_pb2.Sticker(file_ref="https://amojo.test/s.webp"))


def test_write_first_hook_has_no_conversation_id() -> None:
    hook = hook_with(type="text", text="Hi, we write first")
    del hook["message"]["conversation"]["client_id"]
    del hook["message"]["receiver"]["client_id"]
    event = parse_chat_hook(raw(hook), SCOPE_ID)
    assert event is not None
    assert (event.conversation_id, event.receiver_client_id) == ("", "")
    assert event.kommo_chat_id == "8e4d4baa-9e6c-4a88-838a-5f62be227bdc"
    # What the router needs to open the conversation and Kommo to bind it later (§9).
    assert (event.receiver_kommo_id, event.receiver_phone) == ("2ed64e26-70a1-4857-8382-bb066a076219", "79161234567")
    assert event.source_external_id == "78001234567"


def test_seconds_timestamp_is_used_when_msec_is_absent() -> None:
    hook = hook_with(type="text", text="x")
    del hook["message"]["msec_timestamp"]
    event = parse_chat_hook(raw(hook), SCOPE_ID)
    assert event is not None and event.sent_at_ms == 1639572260000


@pytest.mark.parametrize(
    "hook",
    [
        {
            "account_id": ACCOUNT_ID,
            "time": 1,
            "action": {
                "typing": {
                    "user": {"id": "u"},
                    "conversation": {"id": "c", "client_id": "mine"},
                    "expired_at": 6,
                }
            },
        },
        {
            "account_id": ACCOUNT_ID,
            "time": 1,
            "action": {
                "reaction": {
                    "message": {"id": "m"},
                    "msgid": "m",
                    "user": {"id": "u"},
                    "conversation": {"id": "c"},
                    "type": "react",
                    "emoji": "👍",
                }
            },
        },
    ],
    ids=["typing", "reaction"],
)
def test_typing_and_reaction_hooks_are_not_messages(hook: dict[str, Any]) -> None:
    assert parse_chat_hook(raw(hook), SCOPE_ID) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'"text"', "must be a JSON object, got str"),
        (b"{}", "neither a 'message' nor an 'action'"),
        (b'{"action": {"typing": "soon"}}', "action.typing must be an object"),
        (b'{"action": {"dance": {}}}', "unknown action"),
        (b'{"message": []}', "message must be an object"),
        (b'{"message": {"conversation": {"id": "c"}}}', "message.message must be an object, is missing"),
        (raw(hook_with(id=None)), "message.message.id is missing"),
        (raw(hook_with(id="")), "message.message.id is missing or empty"),
        (raw(hook_with(type=None)), "message.message.type is missing"),
        (raw(hook_with(type="text", text=None)), "text message without message.message.text"),
        (raw(hook_with(type="text", text="")), "text message without message.message.text"),
        (raw(hook_with(type="picture", media=None)), "message.message.media is missing"),
        (raw(hook_with(type="hologram")), "unsupported message type 'hologram'"),
        (raw(hook_with(file_size="12")), "message.message.file_size must be an integer"),
        (raw(hook_with(id=42)), "message.message.id must be a string"),
    ],
)
def test_malformed_hooks_are_bad_requests(body: bytes, expected: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_chat_hook(body, SCOPE_ID)
    assert expected in str(caught.value)


def test_hook_without_conversation_id_is_a_bad_request() -> None:
    hook = hook_with(type="text", text="x")
    del hook["message"]["conversation"]
    with pytest.raises(BadRequestError, match=r"message\.conversation must be an object"):
        parse_chat_hook(raw(hook), SCOPE_ID)
    hook["message"]["conversation"] = {"client_id": "c"}
    with pytest.raises(BadRequestError, match=r"message\.conversation\.id"):
        parse_chat_hook(raw(hook), SCOPE_ID)


def test_non_integer_timestamp_is_a_bad_request() -> None:
    hook = hook_with(type="text", text="x")
    hook["message"]["msec_timestamp"] = "1639572260980"
    with pytest.raises(BadRequestError, match=r"message\.msec_timestamp must be an integer"):
        parse_chat_hook(raw(hook), SCOPE_ID)


# -- the emulator sends manager replies as signed hooks


@dataclass
class Receiver:
    """A tiny integration endpoint: records each hook and answers `status`."""

    status: int = 200
    calls: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        self.calls.append((request.url.path, dict(request.headers), body))
        if not verify_hook_signature(SECRET, body, request.headers.get("x-signature", "")):
            return JSONResponse({"error": "bad signature"}, status_code=403)
        return Response(status_code=self.status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/kommo/{scope_id}", self.endpoint, methods=["POST"])])


@dataclass
class Sandbox:
    state: AmojoState
    client: AmojoClient
    receiver: Receiver


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    receiver = Receiver()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app())) as hook_http:
        app, state = create_amojo_emulator(AmojoState(hook_http=hook_http))
        state.register_channel(CHANNEL_ID, SECRET, "http://bridge.test/kommo/:scope_id")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
            client = AmojoClient("http://amojo.test", CHANNEL_ID, SECRET, http)
            await client.connect(ACCOUNT_ID, "Bridge")
            client_user = Participant("tg-42", "Вася", phone="+79151112233")
            incoming = NewMessage("msg-1", "conv-1", client_user, MessageBody("text", text="hi"), 1_700_000_000_000)
            await client.send_message(SCOPE_ID, incoming)
            yield Sandbox(state, client, receiver)


async def test_manager_message_posts_one_correctly_signed_v2_hook(sandbox: Sandbox) -> None:
    result = await sandbox.state.send_manager_message(SCOPE_ID, "conv-1", "Здравствуйте! / Hello")

    assert result.ok and result.status_code == 200 and result.error == ""
    assert result.url == f"http://bridge.test/kommo/{SCOPE_ID}"
    (path, headers, body) = sandbox.receiver.calls[0]
    assert len(sandbox.receiver.calls) == 1
    assert path == f"/kommo/{SCOPE_ID}"
    assert headers["content-type"] == "application/json"
    assert headers["x-signature"] == hook_signature(SECRET, body) == result.signature
    assert body == result.body and not body.endswith(b"\n")

    hook = json.loads(body)
    (chat,) = sandbox.state.chats(SCOPE_ID)
    assert set(hook) == {"account_id", "time", "message"}
    assert hook["account_id"] == ACCOUNT_ID and isinstance(hook["time"], int)
    envelope = hook["message"]
    assert envelope["receiver"] == {
        "id": chat.client.id,
        "client_id": "tg-42",
        "phone": "+79151112233",
        "email": "",
    }
    assert envelope["sender"] == {"id": sandbox.state.manager.id}
    assert envelope["conversation"] == {"id": chat.kommo_chat_id, "client_id": "conv-1"}
    assert envelope["msec_timestamp"] // 1000 == envelope["timestamp"]
    assert envelope["message"] == {"id": result.kommo_msgid, "type": "text", "text": "Здравствуйте! / Hello"}

    # The bridge's own parser reads the emulator's hook back into the right event.
    event = parse_chat_hook(body, SCOPE_ID)
    assert event is not None
    assert (event.kommo_message_id, event.conversation_id, event.kommo_chat_id) == (
        result.kommo_msgid,
        "conv-1",
        chat.kommo_chat_id,
    )
    assert event.receiver_client_id == "tg-42" and event.content.text.body == "Здравствуйте! / Hello"

    # Registered, so the bridge can report on it.
    await sandbox.client.delivery_status(SCOPE_ID, result.kommo_msgid, 1)
    assert [s.status for s in sandbox.state.statuses(result.kommo_msgid)] == [1]


async def test_failed_hook_is_recorded_and_never_retried(sandbox: Sandbox) -> None:
    sandbox.receiver.status = 500
    result = await sandbox.state.send_manager_message(SCOPE_ID, "conv-1", "anyone?")

    assert not result.ok and result.status_code == 500
    assert len(sandbox.receiver.calls) == 1
    assert sandbox.state.hook_results() == [result]
    assert sandbox.state.message(result.kommo_msgid) is not None


async def test_media_manager_message(sandbox: Sandbox) -> None:
    result = await sandbox.state.send_manager_message(
        SCOPE_ID,
        "conv-1",
        "invoice",
        message_type="file",
        media="https://amojo.test/attachments/invoice.pdf",
        file_name="invoice.pdf",
        file_size=2048,
    )
    event = parse_chat_hook(result.body, SCOPE_ID)
    assert event is not None
    media = event.content.media
    assert (media.kind, media.file_ref, media.file_name, media.size, media.caption) == (
        content_pb2.MEDIA_KIND_FILE,
        "https://amojo.test/attachments/invoice.pdf",
        "invoice.pdf",
        2048,
        "invoice",
    )


async def test_manager_message_needs_a_known_conversation(sandbox: Sandbox) -> None:
    with pytest.raises(NotFoundError):
        await sandbox.state.send_manager_message(SCOPE_ID, "no-such-conversation", "x")
    with pytest.raises(NotFoundError):
        await sandbox.state.send_manager_message(f"{CHANNEL_ID}_other-account", "conv-1", "x")
    with pytest.raises(BadRequestError):
        await sandbox.state.send_manager_message(SCOPE_ID, "conv-1", "")
    assert sandbox.receiver.calls == []


async def _state_with_transport(transport: httpx.AsyncBaseTransport) -> tuple[AmojoState, httpx.AsyncClient]:
    hook_http = httpx.AsyncClient(transport=transport)
    app, state = create_amojo_emulator(AmojoState(hook_http=hook_http))
    state.register_channel(CHANNEL_ID, SECRET, "http://bridge.test/kommo/:scope_id")
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    client = AmojoClient("http://amojo.test", CHANNEL_ID, SECRET, http)
    await client.connect(ACCOUNT_ID)
    await client.create_chat(SCOPE_ID, "conv-1", Participant("tg-1", "Client"))
    await http.aclose()
    return state, hook_http


async def test_hook_uses_a_5_second_timeout_and_records_a_timeout() -> None:
    timeouts: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        raise httpx.ReadTimeout("no answer in time", request=request)

    state, hook_http = await _state_with_transport(httpx.MockTransport(handler))
    result = await state.send_manager_message(SCOPE_ID, "conv-1", "hello?")
    await hook_http.aclose()

    assert timeouts == [{"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}]
    assert result.status_code is None and not result.ok
    assert result.error.startswith("ReadTimeout")


async def test_unreachable_hook_url_is_recorded_once() -> None:
    attempts: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    state, hook_http = await _state_with_transport(httpx.MockTransport(handler))
    result = await state.send_manager_message(SCOPE_ID, "conv-1", "hello?")
    await hook_http.aclose()

    assert len(attempts) == 1
    assert result.status_code is None and result.error.startswith("ConnectError")
