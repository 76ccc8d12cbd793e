"""A manager's messages out to WhatsApp through the adapter, against the Cloud API emulator on a real socket:
every type, replies, reactions, read marks and typing, files by link or streamed upload, the statuses that
come back, and every failure mapped to what the bridge does with it (reference/messenger-apis.md §2)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs import status_texts
from libs.errors import (
    BadRequestError,
    CredentialRejectedError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RecipientUnavailableError,
    RetryableError,
    TooLargeError,
)
from libs.media.outbound_files import platform_can_fetch
from libs.messengers.registry import MediaLimits
from tests.support import wait_for
from tests.unit.whatsapp_support import ANN_WA_ID, World, file_message, whatsapp_world

MB = 2**20


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with whatsapp_world() as world:
        yield world


async def send(world: World, content: content_pb2.Content, chat_id: str = ANN_WA_ID, **kwargs: Any) -> str:
    return await world.adapter.send(world.http, world.graph_url, world.credential, chat_id, content, **kwargs)


def text(body: str) -> content_pb2.Content:
    return content_pb2.Content(text=content_pb2.Text(body=body))


def media(
    kind: content_pb2.MediaKind.ValueType, attachment: dict[str, Any], *, caption: str = "", announce_size: bool = True
) -> content_pb2.Content:
    return content_pb2.Content(
        media=content_pb2.Media(
            kind=kind,
            file_ref=attachment["url"],
            file_name=attachment["file_name"],
            size=attachment["file_size"] if announce_size else 0,
            mime_type=attachment["mime_type"],
            caption=caption,
        )
    )


def last_sent(world: World) -> dict[str, Any]:
    return world.sent()[-1]


# ---------------------------------------------------------------------------------------------------------
# Connecting


async def test_the_credential_names_the_number_and_its_business(world: World) -> None:
    identity = await world.adapter.check_credentials(world.http, world.graph_url, world.credential)
    assert identity.external_id == world.phone_number_id
    assert identity.display_name == "Casa Luz (34900123456)"
    other, _, _ = world.wa.create_business("Other", [("+1 555 000 1111", "Other")])
    number, _, token = world.credential.split(":")
    with pytest.raises(CredentialRejectedError):  # the token has no access to the other business
        await world.adapter.check_credentials(world.http, world.graph_url, f"{number}:{other.id}:{token}")
    with pytest.raises(CredentialRejectedError, match="must be"):
        await world.adapter.check_credentials(world.http, world.graph_url, "EAAnotacredential")
    world.wa.revoke_token(token)
    with pytest.raises(CredentialRejectedError, match="190"):
        await world.adapter.check_credentials(world.http, world.graph_url, world.credential)


async def test_registering_runs_metas_handshake_and_a_wrong_verify_token_is_refused(world: World) -> None:
    health = await world.adapter.webhook_health(world.http, world.graph_url, world.credential)
    assert health.url == world.receiver_url
    # The first client message of the fixture came through the registered URL, signed.
    assert [e.content.text.body for e in world.receiver.events] == ["hola"]
    with pytest.raises(PermanentError, match="2200"):
        await world.adapter.register_webhook(
            world.http, world.graph_url, world.credential, world.receiver_url, "not-the-token"
        )
    assert any("verify_token" in refusal for refusal in world.receiver.refusals)


async def test_nothing_is_delivered_to_a_business_the_app_is_not_subscribed_to() -> None:
    async with whatsapp_world(subscribe=False) as world:
        result = await world.control(
            "POST",
            "users/messages",
            json={
                "phone_number_id": world.phone_number_id,
                "user": ANN_WA_ID,
                "message": {"type": "text", "text": {"body": "hi"}},
            },
        )
        assert result["delivery"]["status"] is None
        assert "not subscribed" in result["delivery"]["error"]


# ---------------------------------------------------------------------------------------------------------
# Text, location, contact, replies


async def test_a_text_with_a_link_asks_for_a_preview_and_gets_sent_then_delivered(world: World) -> None:
    wamid = await send(world, text("Your order: https://shop.example/o/42"))
    assert wamid.startswith("wamid.")
    sent = last_sent(world)
    assert sent["body"]["to"] == ANN_WA_ID
    assert sent["body"]["text"] == {"body": "Your order: https://shop.example/o/42", "preview_url": True}
    await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_DELIVERED)
    assert [r.state for r in world.receiver.receipts(wamid)] == [
        events_pb2.DELIVERY_STATE_SENT,
        events_pb2.DELIVERY_STATE_DELIVERED,
    ]
    await send(world, text("no link here"))
    assert last_sent(world)["body"]["text"]["preview_url"] is False


async def test_a_reply_quotes_the_clients_message(world: World) -> None:
    asked = world.receiver.events[0].platform_message_id
    await send(world, text("yes, we are open"), reply_to=asked)
    assert last_sent(world)["body"]["context"] == {"message_id": asked}


async def test_a_text_over_4096_characters_is_refused_before_sending(world: World) -> None:
    with pytest.raises(PermanentError) as refused:
        await send(world, text("x" * 4097))
    assert refused.value.reason == status_texts.TEXT_TOO_LONG
    assert world.sent() == []


async def test_location_and_contact(world: World) -> None:
    await send(
        world, content_pb2.Content(location=content_pb2.Location(lat=40.4168, lon=-3.7038, name="Puerta del Sol"))
    )
    assert last_sent(world)["body"]["location"] == {"latitude": 40.4168, "longitude": -3.7038, "name": "Puerta del Sol"}
    await send(world, content_pb2.Content(contact=content_pb2.Contact(name="Luz Office", phone="+34 900 123 456")))
    assert last_sent(world)["body"]["contacts"] == [
        {
            "name": {"formatted_name": "Luz Office", "first_name": "Luz Office"},
            "phones": [{"phone": "+34 900 123 456", "type": "CELL"}],
        }
    ]


async def test_a_user_known_by_bsuid_is_written_to_as_recipient(world: World) -> None:
    zoe = world.wa.add_client("Zoe", wa_id="34600999888", username="zoe.z", hide_phone=True)
    await world.client_says(zoe.user_id, {"type": "text", "text": {"body": "hi, no number here"}})
    inbound = world.receiver.events[-1]
    assert inbound.chat_id == zoe.user_id and inbound.sender.phone == ""
    wamid = await send(world, text("hello Zoe"), chat_id=inbound.chat_id)
    assert "to" not in last_sent(world)["body"] and last_sent(world)["body"]["recipient"] == zoe.user_id
    await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_DELIVERED)


# ---------------------------------------------------------------------------------------------------------
# Files


async def test_a_picture_goes_by_link_when_its_size_is_known(world: World) -> None:
    photo = await world.attach("cat.jpg", b"\xff\xd8cat" * 500, "image/jpeg")
    wamid = await send(world, media(content_pb2.MEDIA_KIND_PICTURE, photo, caption="our cat"))
    await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_DELIVERED)
    image = last_sent(world)["body"]["image"]
    assert image["link"] == photo["url"] and image["caption"] == "our cat"
    assert image["fetched"]["sha256"] == photo["sha256"]  # Meta fetched exactly Kommo's bytes


async def test_a_file_of_unknown_size_is_uploaded_streamed(world: World) -> None:
    data = bytes(range(256)) * 4096  # 1 MB
    report = await world.attach("report.pdf", data, "application/pdf")
    wamid = await send(world, media(content_pb2.MEDIA_KIND_FILE, report, caption="Q3", announce_size=False))
    await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_DELIVERED)
    document = last_sent(world)["body"]["document"]
    assert set(document) == {"id", "caption", "filename"} and document["filename"] == "report.pdf"
    uploaded = world.wa.media.get(document["id"])
    assert uploaded is not None and uploaded.via == "upload"
    assert (uploaded.size, uploaded.sha256, uploaded.mime_type) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
        "application/pdf",
    )


@pytest.mark.parametrize(
    ("kind", "name", "mime", "size", "shown_as", "extra"),
    [
        (content_pb2.MEDIA_KIND_VIDEO, "clip.mp4", "video/mp4", 3000, "video", {}),
        (content_pb2.MEDIA_KIND_VIDEO, "clip.mov", "video/quicktime", 3000, "document", {"filename": "clip.mov"}),
        (content_pb2.MEDIA_KIND_VOICE, "note.ogg", "audio/ogg", 3000, "audio", {"voice": True}),
        (content_pb2.MEDIA_KIND_VOICE, "note.mp3", "audio/mpeg", 3000, "audio", {}),
        (content_pb2.MEDIA_KIND_AUDIO, "song.mp3", "audio/mpeg", 3000, "audio", {}),
        (content_pb2.MEDIA_KIND_PICTURE, "big.jpg", "image/jpeg", 6 * MB, "document", {"filename": "big.jpg"}),
        (content_pb2.MEDIA_KIND_PICTURE, "anim.gif", "image/gif", 3000, "document", {"filename": "anim.gif"}),
    ],
)
async def test_each_kind_goes_as_what_whatsapp_plays(
    world: World,
    kind: content_pb2.MediaKind.ValueType,
    name: str,
    mime: str,
    size: int,
    shown_as: str,
    extra: dict[str, Any],
) -> None:
    attachment = await world.attach(name, b"\x00" * size, mime)
    wamid = await send(world, media(kind, attachment, announce_size=False))
    await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_DELIVERED)
    sent = last_sent(world)
    assert sent["type"] == shown_as
    assert {k: v for k, v in sent["body"][shown_as].items() if k != "id"} == extra
    assert world.wa.media.get(sent["body"][shown_as]["id"]).sha256 == attachment["sha256"]  # type: ignore[union-attr]


async def test_a_sticker(world: World) -> None:
    attachment = await world.attach("smile.webp", b"RIFF....WEBPVP8 " + b"\x01" * 2000, "image/webp")
    sticker = content_pb2.Content(
        sticker=content_pb2.Sticker(file_ref=attachment["url"], size=attachment["file_size"], mime_type="image/webp")
    )
    wamid = await send(world, sticker)
    await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_DELIVERED)
    assert last_sent(world)["type"] == "sticker"
    with pytest.raises(PermanentError) as refused:
        await send(world, content_pb2.Content(sticker=content_pb2.Sticker(file_ref="kommo-sticker-17")))
    assert refused.value.reason == status_texts.TYPE_UNSUPPORTED


async def test_a_long_caption_follows_the_file_as_text(world: World) -> None:
    attachment = await world.attach("menu.jpg", b"\xff\xd8" * 100, "image/jpeg")
    caption = "Menu of the day. " * 80  # over 1024
    await send(world, media(content_pb2.MEDIA_KIND_PICTURE, attachment, caption=caption))
    image, after = world.sent()[-2:]
    assert image["type"] == "image" and "caption" not in image["body"]["image"]
    assert after["type"] == "text" and after["body"]["text"]["body"] == caption


async def test_a_file_over_100_mb_or_gone_from_kommo_is_refused(world: World) -> None:
    huge = {
        "url": f"{world.kommo_url}/attachments/x/huge.zip",
        "file_name": "huge.zip",
        "file_size": 101 * MB,
        "mime_type": "application/zip",
    }
    with pytest.raises(TooLargeError) as refused:
        await send(world, media(content_pb2.MEDIA_KIND_FILE, huge))
    assert refused.value.reason == status_texts.FILE_TOO_LARGE
    gone = {
        "url": f"{world.kommo_url}/attachments/nope/gone.pdf",
        "file_name": "gone.pdf",
        "file_size": 10,
        "mime_type": "application/pdf",
    }
    with pytest.raises(NotFoundError) as missing:
        await send(world, media(content_pb2.MEDIA_KIND_FILE, gone, announce_size=False))
    assert missing.value.reason == status_texts.FILE_UNAVAILABLE
    with pytest.raises(TooLargeError):  # a configured limit lower than WhatsApp's
        small = await world.attach("a.pdf", b"%PDF" * 1000, "application/pdf")
        await send(
            world, media(content_pb2.MEDIA_KIND_FILE, small), limits=MediaLimits(download_bytes=None, upload_bytes=1000)
        )
    assert world.sent() == []


async def test_a_link_meta_cannot_fetch_fails_after_200(world: World) -> None:
    gone = {
        "url": f"{world.kommo_url}/attachments/nope/gone.jpg",
        "file_name": "gone.jpg",
        "file_size": 500,
        "mime_type": "image/jpeg",
    }
    wamid = await send(world, media(content_pb2.MEDIA_KIND_PICTURE, gone))
    receipt = await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_FAILED)
    assert receipt.platform_error_code == 131053 and receipt.reason == status_texts.PLATFORM_REFUSED


def test_meta_fetches_public_urls_only_unless_graph_is_local() -> None:
    graph = "https://graph.facebook.com/v23.0"
    assert platform_can_fetch("https://amojo.kommo.com/attachments/1/a.jpg", graph)
    assert not platform_can_fetch("http://127.0.0.1:8080/media/v1/x/a.jpg", graph)
    assert not platform_can_fetch("http://gateway.internal/a.jpg", graph)
    assert platform_can_fetch("http://127.0.0.1:8080/a.jpg", "http://127.0.0.1:9002/v23.0")


# ---------------------------------------------------------------------------------------------------------
# A client's files, in: the two-step download


async def test_a_clients_file_is_streamed_through_the_two_step_download(world: World) -> None:
    data = b"%PDF-1.7 " + bytes(range(256)) * 1000
    await world.client_says(
        ANN_WA_ID, file_message("document", data, "application/pdf", filename="invoice.pdf", caption="paid")
    )
    event = world.receiver.events[-1]
    assert (event.content.media.file_name, event.content.media.caption) == ("invoice.pdf", "paid")
    async with world.adapter.open_file(
        world.http, world.graph_url, world.credential, event.content.media.file_ref
    ) as stream:
        assert (stream.size, stream.mime_type) == (len(data), "application/pdf")
        received = b"".join([chunk async for chunk in stream.chunks])
    assert received == data
    await wait_for(lambda: world.wa.log.entries("attachments") != [], timeout=5, what="the download to be recorded")
    steps = [
        (r.method, r.path)
        for r in world.wa.log.entries()
        if event.content.media.file_ref in r.path or "attachments" in r.path
    ]
    assert steps == [("GET", f"/v23.0/{event.content.media.file_ref}"), ("GET", "/whatsapp_business/attachments/")]
    lookaside = world.wa.log.entries("attachments")[-1]
    assert lookaside.headers["authorization"].startswith("Bearer ")


async def test_the_lookaside_url_needs_the_token_and_expires(world: World) -> None:
    await world.client_says(ANN_WA_ID, file_message("image", b"\xff\xd8" * 10, "image/jpeg"))
    media_id = world.receiver.events[-1].content.media.file_ref
    headers = {"Authorization": f"Bearer {world.credential.split(':', 2)[2]}"}
    info = (await world.http.get(f"{world.graph_url}/{media_id}", headers=headers)).json()
    assert (await world.http.get(info["url"])).status_code == 401
    assert (await world.http.get(info["url"], headers=headers)).content == b"\xff\xd8" * 10
    real_clock = world.wa.clock
    world.wa.clock = lambda: real_clock() + 301  # the URL lives 5 minutes
    assert (await world.http.get(info["url"], headers=headers)).status_code == 404
    world.wa.clock = lambda: real_clock() + 8 * 24 * 3600  # the media id lives 7 days
    with pytest.raises(NotFoundError):
        async with world.adapter.open_file(world.http, world.graph_url, world.credential, media_id):
            pass


# ---------------------------------------------------------------------------------------------------------
# Reactions, read marks, typing, edits


async def test_reactions_set_and_taken_back(world: World) -> None:
    target = world.receiver.events[0].platform_message_id
    assert await world.adapter.react(world.http, world.graph_url, world.credential, ANN_WA_ID, target, "❤️", False)
    assert last_sent(world)["body"]["reaction"] == {"message_id": target, "emoji": "❤️"}
    assert await world.adapter.react(world.http, world.graph_url, world.credential, ANN_WA_ID, target, "❤️", True)
    assert last_sent(world)["body"]["reaction"] == {"message_id": target, "emoji": ""}
    assert world.adapter.reaction_for("ok") is None
    assert not await world.adapter.react(world.http, world.graph_url, world.credential, ANN_WA_ID, target, "ok", False)


async def test_typing_marks_the_clients_message_read_and_shows_for_a_while(world: World) -> None:
    last = world.receiver.events[0].platform_message_id
    with pytest.raises(BadRequestError):
        await world.adapter.typing(world.http, world.graph_url, world.credential, ANN_WA_ID)
    await world.adapter.typing(world.http, world.graph_url, world.credential, ANN_WA_ID, last_client_message_id=last)
    assert [(r.message_id, r.typing) for r in world.wa.reads] == [(last, True)]
    assert (await world.control("GET", "typing", params={"phone_number_id": world.phone_number_id, "user": ANN_WA_ID}))[
        "shown"
    ]
    await send(world, text("here it is"))  # a reply ends it
    assert not (
        await world.control("GET", "typing", params={"phone_number_id": world.phone_number_id, "user": ANN_WA_ID})
    )["shown"]
    await world.adapter.mark_read(world.http, world.graph_url, world.credential, last)
    assert world.wa.messages[last].status == "read"
    with pytest.raises(PermanentError):
        await world.adapter.mark_read(world.http, world.graph_url, world.credential, "wamid.unknown")


async def test_a_business_cannot_edit_a_sent_message(world: World) -> None:
    wamid = await send(world, text("tpyo"))
    with pytest.raises(PermanentError) as refused:
        await world.adapter.edit(world.http, world.graph_url, world.credential, ANN_WA_ID, wamid, text("typo"))
    assert refused.value.reason == status_texts.EDIT_UNSUPPORTED


# ---------------------------------------------------------------------------------------------------------
# Failures


async def test_outside_the_window_free_text_fails_after_200_saying_a_template_is_needed(world: World) -> None:
    await world.control(
        "PUT", "window", json={"phone_number_id": world.phone_number_id, "user": ANN_WA_ID, "age_s": 24 * 3600 + 1}
    )
    wamid = await send(world, text("are you still there?"))  # accepted...
    receipt = await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_FAILED)  # ...then failed
    assert (receipt.platform_error_code, receipt.reason) == (131047, status_texts.WINDOW_CLOSED)
    await world.control("PUT", "window_mode", json={"mode": "immediate"})
    with pytest.raises(PermanentError) as refused:
        await send(world, text("still there?"))
    assert refused.value.reason == status_texts.WINDOW_CLOSED
    # The client writes again: the window is open again.
    await world.client_says(ANN_WA_ID, {"type": "text", "text": {"body": "yes!"}})
    wamid = await send(world, text("great"))
    await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_DELIVERED)


async def test_a_number_not_on_whatsapp_or_a_user_who_blocked_fails_with_904(world: World) -> None:
    world.wa.set_last_inbound(world.phone_number_id, "34699000000", world.wa.clock())
    wamid = await send(world, text("hello?"), chat_id="34699000000")
    receipt = await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_FAILED)
    assert (receipt.platform_error_code, receipt.reason) == (131026, status_texts.RECIPIENT_UNDELIVERABLE)
    await world.control("PATCH", f"users/{ANN_WA_ID}", json={"blocked": [world.phone_number_id]})
    wamid = await send(world, text("hello Ann?"))
    assert (await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_FAILED)).platform_error_code == 131026
    await world.control("POST", "errors", json={"code": 131026, "title": "Message undeliverable"})
    with pytest.raises(RecipientUnavailableError) as refused:
        await send(world, text("and now?"))
    assert refused.value.reason == status_texts.RECIPIENT_UNDELIVERABLE


async def test_read_and_played_statuses(world: World) -> None:
    wamid = await send(world, text("did you read it?"))
    await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_DELIVERED)
    await world.control("POST", "users/read", json={"phone_number_id": world.phone_number_id, "user": ANN_WA_ID})
    await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_READ)
    note = await world.attach("note.ogg", b"OggS" * 300, "audio/ogg")
    voice = await send(world, media(content_pb2.MEDIA_KIND_VOICE, note))
    await world.receiver.receipt(voice, events_pb2.DELIVERY_STATE_DELIVERED)
    await world.control("POST", "users/play", json={"message_id": voice})
    await wait_for(lambda: any('"played"' in e.raw.decode() for e in world.receiver.events), timeout=10, what="played")
    assert world.receiver.receipts(voice)[-1].state == events_pb2.DELIVERY_STATE_READ


@pytest.mark.parametrize(
    ("code", "error", "retry_after"),
    [
        (131056, RateLimitedError, 6.0),
        (130429, RateLimitedError, 1.0),
        (80007, RateLimitedError, 60.0),
        (131000, RetryableError, None),
    ],
)
async def test_limits_are_retried_after_a_pause_never_dropped(
    world: World, code: int, error: type[RetryableError], retry_after: float | None
) -> None:
    await world.control("POST", "errors", json={"code": code, "title": "limited"})
    with pytest.raises(error) as refused:
        await send(world, text("hi"))
    assert refused.value.retry_after == retry_after
    assert await send(world, text("hi"))  # the next attempt goes


@pytest.mark.parametrize("code", [131056, 130429])
async def test_a_limit_in_a_failed_status_after_the_200_says_why_and_to_send_again(world: World, code: int) -> None:
    await world.control("POST", "errors", json={"code": code, "title": "limited", "mode": "failed_status"})
    wamid = await send(world, text("held back"))
    receipt = await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_FAILED)
    assert (receipt.reason, receipt.platform_error_code) == (status_texts.SENDING_LIMITED, code)
    assert "send it again" in status_texts.render(receipt.reason, dict(receipt.reason_args), "en")


async def test_http_faults_and_template_errors(world: World) -> None:
    await world.control("POST", "faults", json={"path": "/messages$", "status": 429, "retry_after": 7})
    with pytest.raises(RateLimitedError) as limited:
        await send(world, text("hi"))
    assert limited.value.retry_after == 7.0
    await world.control("POST", "faults", json={"path": "/messages$", "status": 503})
    with pytest.raises(RetryableError):
        await send(world, text("hi"))
    await world.control("POST", "errors", json={"code": 132015, "title": "Template is Paused"})
    with pytest.raises(PermanentError) as paused:
        await send(world, text("hi"))
    assert paused.value.reason == status_texts.TEMPLATE_REFUSED
    assert paused.value.reason_args["detail"] == "the template is paused for low quality"
    await world.control("POST", "errors", json={"code": 190, "title": "Error validating access token", "status": 401})
    with pytest.raises(CredentialRejectedError):
        await send(world, text("hi"))
    await world.control(
        "POST", "errors", json={"code": 10, "title": "Application does not have permission", "status": 403}
    )
    with pytest.raises(CredentialRejectedError):
        await send(world, text("hi"))


async def test_an_echo_of_the_token_never_reaches_an_error(world: World) -> None:
    token = world.credential.split(":", 2)[2]
    await world.control("POST", "errors", json={"code": 100, "title": "Invalid parameter", "details": f"bad {token}"})
    with pytest.raises(PermanentError) as refused:
        await send(world, text("hi"))
    assert token not in str(refused.value) and token not in str(refused.value.reason_args)
