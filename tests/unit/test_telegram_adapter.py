"""The Telegram adapter: webhook verification, Update parsing, and the Bot API client run against the
emulator (through httpx.ASGITransport) so every error mapping is proven on Telegram's real shapes."""

from __future__ import annotations

import json
import traceback
from typing import Any

import httpx
import pytest
from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs import status_texts
from libs.emulation import Fault
from libs.errors import (
    AuthError,
    BadRequestError,
    BridgeError,
    CredentialRejectedError,
    MissingCredentialError,
    PermanentError,
    RateLimitedError,
    RecipientUnavailableError,
    RetryableError,
)
from libs.messengers.registry import ChannelIdentity, WebhookHealth
from libs.messengers.telegram.adapter import (
    ALLOWED_UPDATES,
    BotInfo,
    TelegramAdapter,
    TelegramBotClient,
    parse_update,
    verify_webhook,
)
from libs.messengers.telegram.emulator import TelegramEmulator, TelegramState
from libs.messengers.telegram.emulator_state import Bot

BASE = "http://telegram.test"
USER: dict[str, Any] = {
    "id": 555001,
    "first_name": "Ana",
    "last_name": "Silva",
    "username": "ana_s",
    "language_code": "pt",
}


def _update(message: dict[str, Any], update_id: int = 9001) -> bytes:
    base: dict[str, Any] = {
        "message_id": 17,
        "from": {"id": 555001, "is_bot": False, "first_name": "Ana", "last_name": "Silva", "username": "ana_s"},
        "chat": {"id": 555001, "first_name": "Ana", "type": "private"},
        "date": 1_760_000_000,
    }
    return json.dumps({"update_id": update_id, "message": {**base, **message}}).encode()


# ---------------------------------------------------------------------------------------------------------
# verify_webhook


def test_verify_webhook_accepts_the_secret_under_any_header_case() -> None:
    verify_webhook({"x-telegram-bot-api-secret-token": "s3cr3t_-X"}, "s3cr3t_-X")
    verify_webhook({"X-Telegram-Bot-Api-Secret-Token": "s3cr3t_-X"}, "s3cr3t_-X")


def test_verify_webhook_without_the_header_is_a_missing_credential() -> None:
    with pytest.raises(MissingCredentialError):
        verify_webhook({"content-type": "application/json"}, "s3cr3t")
    with pytest.raises(MissingCredentialError):
        verify_webhook({"x-telegram-bot-api-secret-token": ""}, "s3cr3t")


def test_verify_webhook_with_a_wrong_secret_is_an_auth_error() -> None:
    with pytest.raises(AuthError) as caught:
        verify_webhook({"x-telegram-bot-api-secret-token": "guess"}, "s3cr3t")
    assert not isinstance(caught.value, MissingCredentialError)
    assert "guess" not in str(caught.value) and "s3cr3t" not in str(caught.value)


def test_verify_webhook_never_passes_with_no_configured_secret() -> None:
    with pytest.raises(AuthError):
        verify_webhook({"x-telegram-bot-api-secret-token": "anything"}, "")


# ---------------------------------------------------------------------------------------------------------
# parse_update


def test_text_message_becomes_an_inbound_message_with_the_sender_profile() -> None:
    body = json.dumps(
        {
            "update_id": 123456789,
            "message": {
                "message_id": 42,
                "from": {
                    "id": 555001,
                    "is_bot": False,
                    "first_name": "Ana",
                    "last_name": "Silva",
                    "username": "ana_s",
                    "language_code": "pt-br",
                },
                "chat": {"id": 555001, "first_name": "Ana", "last_name": "Silva", "type": "private"},
                "date": 1_760_000_123,
                "text": "Olá, preciso de ajuda",
            },
        }
    ).encode()
    event = parse_update(body, "conn-1")
    assert event is not None
    assert event.event_id == "telegram:conn-1:123456789"
    assert event.platform == content_pb2.PLATFORM_TELEGRAM
    assert event.connection_id == "conn-1"
    assert event.chat_id == "555001"
    assert event.platform_message_id == "42"
    assert event.sender_id == "555001"
    assert event.sender.name == "Ana Silva"
    assert event.sender.username == "ana_s"
    assert event.sender.profile_link == "https://t.me/ana_s"
    assert event.sender.language == "pt-br"
    assert event.sent_at_ms == 1_760_000_123_000
    assert event.content.WhichOneof("body") == "text"
    assert event.content.text.body == "Olá, preciso de ajuda"
    assert event.raw == body


def test_profile_without_last_name_or_username_has_no_link() -> None:
    body = json.dumps(
        {
            "update_id": 1,
            "message": {
                "message_id": 1,
                "from": {"id": 7, "is_bot": False, "first_name": "Bo"},
                "chat": {"id": 7, "first_name": "Bo", "type": "private"},
                "date": 1,
                "text": "hi",
            },
        }
    ).encode()
    event = parse_update(body, "c")
    assert event is not None
    assert event.sender.name == "Bo"
    assert event.sender.username == ""
    assert event.sender.profile_link == ""


def test_photo_takes_the_largest_size_and_the_caption() -> None:
    photo = [
        {"file_id": "small", "file_unique_id": "u1", "width": 90, "height": 60, "file_size": 1200},
        {"file_id": "large", "file_unique_id": "u3", "width": 1280, "height": 853, "file_size": 98000},
        {"file_id": "medium", "file_unique_id": "u2", "width": 320, "height": 213, "file_size": 15000},
    ]
    event = parse_update(_update({"photo": photo, "caption": "my receipt"}), "c")
    assert event is not None
    media = event.content.media
    assert event.content.WhichOneof("body") == "media"
    assert media.kind == content_pb2.MEDIA_KIND_PICTURE
    assert media.file_ref == "large"
    assert media.size == 98000
    assert media.caption == "my receipt"


def test_document_becomes_a_file_with_name_type_and_size() -> None:
    document = {
        "file_id": "doc-id",
        "file_unique_id": "du",
        "file_name": "invoice.pdf",
        "mime_type": "application/pdf",
        "file_size": 34567,
    }
    event = parse_update(_update({"document": document, "caption": "see attached"}), "c")
    assert event is not None
    media = event.content.media
    assert (media.kind, media.file_ref, media.file_name, media.mime_type, media.size, media.caption) == (
        content_pb2.MEDIA_KIND_FILE,
        "doc-id",
        "invoice.pdf",
        "application/pdf",
        34567,
        "see attached",
    )


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("video", content_pb2.MEDIA_KIND_VIDEO),
        ("voice", content_pb2.MEDIA_KIND_VOICE),
        ("audio", content_pb2.MEDIA_KIND_AUDIO),
        ("video_note", content_pb2.MEDIA_KIND_VIDEO),
    ],
)
def test_timed_media_keep_kind_type_size_and_duration(key: str, kind: content_pb2.MediaKind.ValueType) -> None:
    file = {"file_id": f"{key}-id", "file_unique_id": "x", "duration": 12, "mime_type": "audio/ogg", "file_size": 999}
    event = parse_update(_update({key: file, "caption": "listen"}), "c")
    assert event is not None
    media = event.content.media
    assert media.kind == kind
    assert media.file_ref == f"{key}-id"
    assert media.duration_s == 12
    assert media.mime_type == "audio/ogg"
    assert media.size == 999
    assert media.caption == "listen"


def test_animation_is_a_video_even_though_it_also_sets_document() -> None:
    animation = {"file_id": "gif-id", "file_unique_id": "g", "file_name": "fun.mp4", "mime_type": "video/mp4"}
    event = parse_update(_update({"animation": animation, "document": animation}), "c")
    assert event is not None
    assert event.content.media.kind == content_pb2.MEDIA_KIND_VIDEO
    assert event.content.media.file_ref == "gif-id"


def test_sticker_keeps_file_ref_and_emoji() -> None:
    sticker = {"file_id": "stk", "file_unique_id": "s", "type": "regular", "width": 512, "height": 512, "emoji": "👍"}
    event = parse_update(_update({"sticker": sticker}), "c")
    assert event is not None
    assert event.content.WhichOneof("body") == "sticker"
    assert (event.content.sticker.file_ref, event.content.sticker.emoji) == ("stk", "👍")


def test_location_and_venue() -> None:
    event = parse_update(_update({"location": {"latitude": -23.55, "longitude": -46.63}}), "c")
    assert event is not None
    assert event.content.WhichOneof("body") == "location"
    assert (event.content.location.lat, event.content.location.lon) == (-23.55, -46.63)
    assert event.content.location.name == ""

    location = {"latitude": 38.7, "longitude": -9.14}
    venue = {"location": location, "title": "Café Central", "address": "Rua Augusta 1"}
    event = parse_update(_update({"location": location, "venue": venue}), "c")
    assert event is not None
    assert event.content.location.name == "Café Central"


def test_contact_keeps_name_and_phone() -> None:
    contact = {"phone_number": "+5511999990000", "first_name": "Carla", "last_name": "Lima", "user_id": 77}
    event = parse_update(_update({"contact": contact}), "c")
    assert event is not None
    assert event.content.WhichOneof("body") == "contact"
    assert (event.content.contact.name, event.content.contact.phone) == ("Carla Lima", "+5511999990000")


def test_unknown_content_is_never_silent() -> None:
    poll = {"id": "p1", "question": "Which?", "options": [], "is_anonymous": True, "type": "regular"}
    event = parse_update(_update({"poll": poll}), "c")
    assert event is not None
    assert event.content.WhichOneof("body") == "text"
    assert event.content.text.body == "[unsupported Telegram message: poll]"

    event = parse_update(_update({"dice": {"emoji": "🎲", "value": 4}}), "c")
    assert event is not None
    assert event.content.text.body == "[unsupported Telegram message: dice]"


@pytest.mark.parametrize(
    "update",
    [
        {
            "update_id": 5,
            "edited_message": {
                "message_id": 1,
                "date": 1,
                "edit_date": 2,
                "chat": {"id": -1, "title": "Group", "type": "group"},
                "text": "x",
            },
        },
        {
            "update_id": 6,
            "my_chat_member": {
                "chat": {"id": -100777, "title": "Group", "type": "supergroup"},
                "from": {"id": 1, "is_bot": False, "first_name": "A"},
                "date": 1,
                "old_chat_member": {"status": "member", "user": {"id": 2, "is_bot": True, "first_name": "B"}},
                "new_chat_member": {"status": "kicked", "user": {"id": 2, "is_bot": True, "first_name": "B"}},
            },
        },
        {"update_id": 7, "callback_query": {"id": "q", "from": {"id": 1}, "chat_instance": "i", "data": "y"}},
        {
            "update_id": 8,
            "message": {
                "message_id": 3,
                "from": {"id": 1, "is_bot": False, "first_name": "A"},
                "chat": {"id": -100123, "title": "Group", "type": "supergroup"},
                "date": 1,
                "text": "in a group",
            },
        },
    ],
    ids=["group_edited_message", "group_my_chat_member", "callback_query", "group_message"],
)
def test_updates_the_bridge_does_not_carry_yet_are_ignored(update: dict[str, Any]) -> None:
    assert parse_update(json.dumps(update).encode(), "c") is None


def _membership_update(old: str, new: str) -> bytes:
    bot = {"id": 2, "is_bot": True, "first_name": "B"}
    change = {
        "chat": {"id": 41, "type": "private", "first_name": "Ann"},
        "from": {"id": 41, "is_bot": False, "first_name": "Ann", "username": "ann"},
        "date": 1_700_000_000,
        "old_chat_member": {"status": old, "user": bot},
        "new_chat_member": {"status": new, "user": bot},
    }
    return json.dumps({"update_id": 9, "my_chat_member": change}).encode()


@pytest.mark.parametrize(
    ("new_status", "reason"),
    [("kicked", events_pb2.CLOSE_REASON_BLOCKED), ("left", events_pb2.CLOSE_REASON_LEFT)],
)
def test_a_client_blocking_the_bot_closes_the_conversation(new_status: str, reason: int) -> None:
    event = parse_update(_membership_update("member", new_status), "c")
    assert event is not None
    assert event.WhichOneof("event") == "closed"
    assert event.closed.reason == reason
    assert (event.chat_id, event.sender_id, event.event_id) == ("41", "41", "telegram:c:9")
    assert event.sent_at_ms == 1_700_000_000_000
    assert event.sender.profile_link == "https://t.me/ann"


def test_a_client_unblocking_the_bot_reopens_the_conversation() -> None:
    event = parse_update(_membership_update("kicked", "member"), "c")
    assert event is not None
    assert event.WhichOneof("event") == "reopened"


def test_a_client_sharing_their_own_contact_gives_their_phone() -> None:
    def update(user_id: int) -> bytes:
        contact = {"phone_number": "+15550102030", "first_name": "Ann", "user_id": user_id}
        message = {
            "message_id": 3,
            "from": {"id": 41, "is_bot": False, "first_name": "Ann"},
            "chat": {"id": 41, "type": "private"},
            "date": 1,
            "contact": contact,
        }
        return json.dumps({"update_id": 10, "message": message}).encode()

    own = parse_update(update(41), "c")
    other = parse_update(update(99), "c")
    assert own is not None and other is not None
    assert own.sender.phone == "+15550102030"
    assert own.content.contact.phone == "+15550102030"
    assert other.sender.phone == ""  # someone else's card says nothing about the sender


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got an array"),
        (b'{"message": {}}', "update_id must be an integer, got nothing"),
        (b'{"update_id": "12"}', "update_id must be an integer, got a string"),
        (b'{"update_id": 3, "message": "hi"}', "telegram update 3: update.message must be an object"),
        (
            _update({"chat": {"id": "555", "type": "private"}}, update_id=4),
            "telegram update 4: message.chat.id must be an integer, got a string",
        ),
        (_update({"from": None}, update_id=5), "message.from must be an object, got nothing"),
        (_update({"photo": []}, update_id=6), "message.photo must be a non-empty array"),
        (_update({"document": {"file_name": "a.pdf"}}, update_id=7), "message.document.file_id must be a string"),
    ],
)
def test_malformed_updates_are_bad_requests_with_a_precise_message(body: bytes, fragment: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_update(body, "c")
    assert fragment in str(caught.value)


# ---------------------------------------------------------------------------------------------------------
# TelegramBotClient against the emulator


@pytest.fixture
def bot(emulator: TelegramEmulator) -> Bot:
    return emulator.state.create_bot("acme_support_bot", "Acme Support")


@pytest.fixture
def client(bot: Bot, http: httpx.AsyncClient) -> TelegramBotClient:
    return TelegramBotClient(BASE, bot.token, http)


async def _known_user(state: TelegramState, bot: Bot, user: dict[str, Any] = USER) -> int:
    """A chat exists once the client has written to the bot."""
    await state.client_message(bot.id, user, text="hello")
    user_id: int = user["id"]
    return user_id


async def test_get_me(client: TelegramBotClient, bot: Bot) -> None:
    assert await client.get_me() == BotInfo(id=bot.id, username="acme_support_bot", first_name="Acme Support")


async def test_set_webhook_and_webhook_info(client: TelegramBotClient) -> None:
    await client.set_webhook(
        "https://bridge.example/webhooks/telegram/c1", "Secret_123-abc", allowed_updates=["message"], max_connections=10
    )
    info = await client.get_webhook_info()
    assert info["url"] == "https://bridge.example/webhooks/telegram/c1"
    assert info["pending_update_count"] == 0
    assert info["max_connections"] == 10
    assert info["allowed_updates"] == ["message"]

    await client.delete_webhook()
    assert (await client.get_webhook_info())["url"] == ""


async def test_set_webhook_rejects_a_secret_telegram_would_reject(client: TelegramBotClient) -> None:
    with pytest.raises(PermanentError) as caught:
        await client.set_webhook("https://bridge.example/hook", "not allowed!")
    assert "secret token contains unallowed characters" in str(caught.value)
    with pytest.raises(PermanentError):
        await client.set_webhook("https://bridge.example/hook", "x" * 257)


async def test_send_text_to_a_known_chat(client: TelegramBotClient, emulator: TelegramEmulator, bot: Bot) -> None:
    chat_id = await _known_user(emulator.state, bot)
    message_id = await client.send_text(str(chat_id), "Hi Ana, how can we help?")
    # Message ids are per chat and shared by both sides: the client's "hello" was 1.
    assert message_id == 2
    [sent] = emulator.state.sent_messages(bot.id, chat_id)
    assert sent.message["text"] == "Hi Ana, how can we help?"
    assert sent.message["from"]["id"] == bot.id
    assert sent.message["chat"] == {
        "id": chat_id,
        "first_name": "Ana",
        "last_name": "Silva",
        "username": "ana_s",
        "type": "private",
    }


async def test_send_text_as_a_reply_uses_reply_parameters(
    client: TelegramBotClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    chat_id = await _known_user(emulator.state, bot)
    await client.send_text(str(chat_id), "answering you", reply_to_message_id=1)
    [sent] = emulator.state.sent_messages(bot.id, chat_id)
    assert sent.message["reply_to_message"]["text"] == "hello"
    [request] = emulator.state.log.entries("sendMessage")
    assert request.json()["reply_parameters"]["message_id"] == 1
    assert "reply_to_message_id" not in request.json()


async def test_send_to_an_unknown_chat_is_permanent(client: TelegramBotClient) -> None:
    with pytest.raises(PermanentError) as caught:
        await client.send_text("424242", "anyone?")
    assert not isinstance(caught.value, RecipientUnavailableError)
    assert "chat not found" in str(caught.value)


async def test_send_to_a_user_who_blocked_the_bot_is_recipient_unavailable(
    client: TelegramBotClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    chat_id = await _known_user(emulator.state, bot)
    await emulator.state.block(bot.id, chat_id)
    with pytest.raises(RecipientUnavailableError) as caught:
        await client.send_text(str(chat_id), "are you there?")
    assert "blocked" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "description", "unreachable", "reason", "args"),
    [
        (403, "Forbidden: bot was blocked by the user", True, "client_blocked", {}),
        (403, "Forbidden: user is deactivated", True, "client_deactivated", {}),
        (403, "Forbidden: bot can't initiate conversation with a user", True, "client_never_started", {}),
        (400, "Bad Request: chat not found", False, "chat_not_found", {}),
        (400, "Bad Request: message is too long", False, "text_too_long", {"platform": "telegram", "limit": "4096"}),
        (
            400,
            "Bad Request: can't parse entities: unsupported start tag",
            False,
            "platform_refused",
            {"platform": "telegram", "detail": "can't parse entities: unsupported start tag"},
        ),
        (
            403,
            "Forbidden: bot is not a member of the channel chat",
            False,
            "platform_refused",
            {"platform": "telegram", "detail": "bot is not a member of the channel chat"},
        ),
    ],
)
async def test_a_refused_send_names_the_reason_a_manager_reads(
    client: TelegramBotClient,
    emulator: TelegramEmulator,
    bot: Bot,
    status: int,
    description: str,
    unreachable: bool,
    reason: str,
    args: dict[str, str],
) -> None:
    chat_id = await _known_user(emulator.state, bot)
    emulator.state.faults.add(Fault(path="sendMessage$", status=status, description=description))
    with pytest.raises(PermanentError) as caught:
        await client.send_text(str(chat_id), "hello")
    assert isinstance(caught.value, RecipientUnavailableError) is unreachable
    assert (caught.value.reason, caught.value.reason_args) == (reason, args)
    assert description in str(caught.value)


async def test_the_emulators_own_refusals_carry_their_reasons(
    client: TelegramBotClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    with pytest.raises(PermanentError) as unknown:
        await client.send_text("424242", "anyone?")
    assert unknown.value.reason == "chat_not_found"
    chat_id = await _known_user(emulator.state, bot)
    with pytest.raises(PermanentError) as long:
        await client.send_text(str(chat_id), "x" * 4097)
    assert long.value.reason == "text_too_long"
    await emulator.state.block(bot.id, chat_id)
    with pytest.raises(RecipientUnavailableError) as blocked:
        await client.send_text(str(chat_id), "still there?")
    assert blocked.value.reason == "client_blocked"


async def test_flood_limit_is_rate_limited_with_retry_after(
    client: TelegramBotClient, emulator: TelegramEmulator, bot: Bot, http: httpx.AsyncClient
) -> None:
    response = await http.put("/_emulator/limits", json={"per_chat_per_s": 0.5, "per_chat_burst": 2})
    assert response.status_code == 200
    chat_id = str(await _known_user(emulator.state, bot))
    await client.send_text(chat_id, "one")
    await client.send_text(chat_id, "two")
    with pytest.raises(RateLimitedError) as caught:
        await client.send_text(chat_id, "three")
    assert caught.value.retry_after == 2
    assert "Too Many Requests: retry after 2" in str(caught.value)


async def test_injected_429_fault_carries_its_retry_after(
    client: TelegramBotClient, emulator: TelegramEmulator
) -> None:
    emulator.state.faults.add(Fault(path="getMe$", status=429, retry_after=7))
    with pytest.raises(RateLimitedError) as caught:
        await client.get_me()
    assert caught.value.retry_after == 7


async def test_injected_500_fault_is_retryable(client: TelegramBotClient, emulator: TelegramEmulator) -> None:
    emulator.state.faults.add(Fault(path="sendMessage$", status=500))
    with pytest.raises(RetryableError) as caught:
        await client.send_text("1", "x")
    assert not isinstance(caught.value, RateLimitedError)
    assert "Internal Server Error" in str(caught.value)


async def test_a_bad_token_is_a_rejected_credential(http: httpx.AsyncClient, bot: Bot) -> None:
    wrong = TelegramBotClient(BASE, f"{bot.id}:{'A' * 35}", http)
    with pytest.raises(CredentialRejectedError):
        await wrong.get_me()


def _all_text(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


async def test_the_token_never_appears_in_errors_or_repr(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    errors: list[BridgeError] = []
    chat_id = await _known_user(emulator.state, bot)
    await emulator.state.block(bot.id, chat_id)
    client = TelegramBotClient(BASE, bot.token, http)
    emulator.state.faults.add(Fault(path="getWebhookInfo$", status=502))
    for call in (
        client.get_webhook_info(),  # 502
        client.send_text(str(chat_id), "x"),  # 403 blocked
        client.send_text("1", "x"),  # 400 chat not found
        TelegramBotClient(BASE, bot.token + "x", http).get_me(),  # 401
    ):
        with pytest.raises(BridgeError) as caught:
            await call

        errors.append(caught.value)

    def refuse(request: httpx.Request) -> httpx.Response:
        # httpx's own messages include the URL, and so the token: the adapter must not pass them on.
        raise httpx.ConnectError(f"connection to {request.url} refused", request=request)

    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout(f"timed out reading {request.url}", request=request)

    for handler, expected in ((refuse, "connection failed (ConnectError)"), (stall, "timed out (ReadTimeout)")):
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as broken:
            with pytest.raises(RetryableError) as caught_transport:
                await TelegramBotClient(BASE, bot.token, broken).send_text("1", "x")
        assert str(caught_transport.value) == f"telegram sendMessage: {expected}"
        assert caught_transport.value.__context__ is None and caught_transport.value.__cause__ is None
        errors.append(caught_transport.value)

    assert len(errors) == 6
    secret_part = bot.token.partition(":")[2]
    for error in errors:
        assert secret_part not in _all_text(error), error
    assert secret_part not in repr(client)
    assert str(bot.id) in repr(client)


async def test_send_content_location_and_contact(
    client: TelegramBotClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    chat_id = await _known_user(emulator.state, bot)
    location = content_pb2.Content(location=content_pb2.Location(lat=38.72, lon=-9.14))
    contact = content_pb2.Content(contact=content_pb2.Contact(name="Acme Desk", phone="+351210000000"))
    text = content_pb2.Content(text=content_pb2.Text(body="plain"))
    ids = [await client.send_content(str(chat_id), c) for c in (location, contact, text)]
    assert ids == [2, 3, 4]
    sent = [s.message for s in emulator.state.sent_messages(bot.id, chat_id)]
    assert sent[0]["location"] == {"latitude": 38.72, "longitude": -9.14}
    assert sent[1]["contact"] == {"phone_number": "+351210000000", "first_name": "Acme Desk"}
    assert sent[2]["text"] == "plain"
    assert [s.method for s in emulator.state.sent_messages(bot.id)] == ["sendLocation", "sendContact", "sendMessage"]


async def test_send_content_refuses_files_without_a_url_and_empty_content(client: TelegramBotClient) -> None:
    # Files from Kommo come as URLs (sending them: tests/unit/test_telegram_media_send.py); a Kommo
    # sticker_id names no file at all.
    media = content_pb2.Content(media=content_pb2.Media(kind=content_pb2.MEDIA_KIND_PICTURE, file_ref="f"))
    sticker = content_pb2.Content(sticker=content_pb2.Sticker(file_ref="s"))
    for content, reason in ((media, status_texts.FILE_UNAVAILABLE), (sticker, status_texts.TYPE_UNSUPPORTED)):
        with pytest.raises(PermanentError) as caught:
            await client.send_content("1", content)
        assert caught.value.reason == reason
    with pytest.raises(BadRequestError):
        await client.send_content("1", content_pb2.Content())


async def test_send_chat_action(client: TelegramBotClient, emulator: TelegramEmulator, bot: Bot) -> None:
    chat_id = await _known_user(emulator.state, bot)
    await client.send_chat_action(str(chat_id))
    assert [(a.chat_id, a.action) for a in emulator.state.chat_actions] == [(chat_id, "typing")]
    with pytest.raises(BadRequestError):
        await client.send_chat_action(str(chat_id), "dancing")


async def test_registry_adapter_uses_the_client(http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot) -> None:
    adapter = TelegramAdapter()
    chat_id = await _known_user(emulator.state, bot)  # before the webhook points somewhere unreachable
    identity = await adapter.check_credentials(http, BASE, bot.token)
    assert identity == ChannelIdentity(external_id=str(bot.id), display_name="Acme Support (@acme_support_bot)")

    await adapter.register_webhook(http, BASE, bot.token, "https://bridge.example/webhooks/telegram/c9", "Sec_ret")
    info = emulator.state.webhook_info(bot)
    assert info["url"] == "https://bridge.example/webhooks/telegram/c9"
    assert info["allowed_updates"] == ALLOWED_UPDATES
    assert bot.secret_token == "Sec_ret"

    sent_id = await adapter.send(
        http, BASE, bot.token, str(chat_id), content_pb2.Content(text=content_pb2.Text(body="ok"))
    )
    assert sent_id == "2"

    body = _update({"text": "hey"})
    with pytest.raises(AuthError):
        adapter.verify_webhook({"X-Telegram-Bot-Api-Secret-Token": "nope"}, body, "Sec_ret")
    adapter.verify_webhook({"X-Telegram-Bot-Api-Secret-Token": "Sec_ret"}, body, "Sec_ret")
    (event,) = adapter.parse_webhook(body, "c9")
    assert event.content.text.body == "hey"


async def test_webhook_health_reports_what_get_webhook_info_says(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    adapter = TelegramAdapter()
    assert await adapter.webhook_health(http, BASE, bot.token) == WebhookHealth("", 0, 0, "")
    await emulator.state.client_message(bot.id, USER, text="waiting for a webhook")
    await adapter.register_webhook(http, BASE, bot.token, "https://bridge.example/webhooks/telegram/c9", "Sec_ret")
    emulator.state.webhook_failed(bot, "Wrong response from the webhook: 503 Service Unavailable", at=1_700_000_000)
    health = await adapter.webhook_health(http, BASE, bot.token)
    assert health.url == "https://bridge.example/webhooks/telegram/c9"
    assert health.pending_updates == 1
    assert (health.last_error_at_ms, health.last_error_message) == (
        1_700_000_000_000,
        "Wrong response from the webhook: 503 Service Unavailable",
    )
    revoked = bot.token
    emulator.state.revoke_token(bot)
    with pytest.raises(CredentialRejectedError):
        await adapter.webhook_health(http, BASE, revoked)


# ---------------------------------------------------------------------------------------------------------
# parse_update: complete canonical content for every kind of file a client sends


def test_a_photo_is_a_jpeg_picture() -> None:
    photo = [{"file_id": "p", "file_unique_id": "u", "width": 800, "height": 600, "file_size": 51_234}]
    event = parse_update(_update({"photo": photo}), "c")
    assert event is not None
    media = event.content.media
    assert (media.kind, media.file_ref, media.mime_type, media.size, media.file_name, media.caption) == (
        content_pb2.MEDIA_KIND_PICTURE,
        "p",
        "image/jpeg",
        51_234,
        "",
        "",
    )


@pytest.mark.parametrize(
    ("key", "kind", "mime_type"),
    [
        ("video", content_pb2.MEDIA_KIND_VIDEO, "video/mp4"),
        ("animation", content_pb2.MEDIA_KIND_VIDEO, "video/mp4"),
        ("video_note", content_pb2.MEDIA_KIND_VIDEO, "video/mp4"),
        ("voice", content_pb2.MEDIA_KIND_VOICE, "audio/ogg"),
        ("audio", content_pb2.MEDIA_KIND_AUDIO, "audio/mpeg"),
        ("document", content_pb2.MEDIA_KIND_FILE, "application/octet-stream"),
    ],
)
def test_files_without_a_mime_type_get_the_one_telegram_stores_them_as(
    key: str, kind: content_pb2.MediaKind.ValueType, mime_type: str
) -> None:
    file = {"file_id": f"{key}-id", "file_unique_id": "x", "file_size": 4321, "duration": 3}
    event = parse_update(_update({key: file}), "c")
    assert event is not None
    assert (event.content.media.kind, event.content.media.mime_type, event.content.media.size) == (
        kind,
        mime_type,
        4321,
    )


def test_a_video_note_keeps_size_and_duration() -> None:
    note = {"file_id": "vn", "file_unique_id": "x", "length": 240, "duration": 9, "file_size": 700_000}
    event = parse_update(_update({"video_note": note}), "c")
    assert event is not None
    media = event.content.media
    assert (media.kind, media.file_ref, media.duration_s, media.size, media.mime_type) == (
        content_pb2.MEDIA_KIND_VIDEO,
        "vn",
        9,
        700_000,
        "video/mp4",
    )


def test_a_video_keeps_its_name_and_type() -> None:
    video = {
        "file_id": "v",
        "file_unique_id": "x",
        "width": 1280,
        "height": 720,
        "duration": 31,
        "file_name": "tour.mov",
        "mime_type": "video/quicktime",
        "file_size": 9_000_000,
    }
    event = parse_update(_update({"video": video, "caption": "the flat"}), "c")
    assert event is not None
    media = event.content.media
    assert (media.file_name, media.mime_type, media.size, media.duration_s, media.caption) == (
        "tour.mov",
        "video/quicktime",
        9_000_000,
        31,
        "the flat",
    )


def test_an_audio_without_a_file_name_is_named_by_performer_and_title() -> None:
    audio = {"file_id": "a", "file_unique_id": "x", "duration": 200, "performer": "Nina", "title": "Song"}
    event = parse_update(_update({"audio": audio}), "c")
    assert event is not None
    assert (event.content.media.file_name, event.content.media.mime_type) == ("Nina - Song.mp3", "audio/mpeg")

    named = {**audio, "file_name": "track01.m4a", "mime_type": "audio/mp4"}
    event = parse_update(_update({"audio": named}), "c")
    assert event is not None
    assert (event.content.media.file_name, event.content.media.mime_type) == ("track01.m4a", "audio/mp4")


@pytest.mark.parametrize(
    ("flags", "mime_type"),
    [
        ({"is_animated": False, "is_video": False}, "image/webp"),
        ({"is_animated": True, "is_video": False}, "application/x-tgsticker"),
        ({"is_animated": False, "is_video": True}, "video/webm"),
    ],
)
def test_a_sticker_carries_size_and_the_type_of_its_format(flags: dict[str, bool], mime_type: str) -> None:
    sticker = {
        "file_id": "stk",
        "file_unique_id": "s",
        "type": "regular",
        "width": 512,
        "height": 512,
        "emoji": "🎉",
        "file_size": 23_456,
        **flags,
    }
    event = parse_update(_update({"sticker": sticker}), "c")
    assert event is not None
    assert event.content.sticker == content_pb2.Sticker(file_ref="stk", emoji="🎉", size=23_456, mime_type=mime_type)


def test_a_text_with_links_is_kept_intact() -> None:
    text = "Look: https://example.com/item?id=7 and t.me/shop"
    entities = [{"type": "url", "offset": 6, "length": 29}, {"type": "url", "offset": 40, "length": 9}]
    event = parse_update(_update({"text": text, "entities": entities, "link_preview_options": {}}), "c")
    assert event is not None
    assert event.content.text.body == text
