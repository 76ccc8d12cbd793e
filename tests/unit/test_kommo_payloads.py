"""What we send to amojo: exact field names, strict JSON types, and Content translation."""

from __future__ import annotations

import json

import pytest
from kommo_bridge.events.v1 import content_pb2

from libs.errors import BadRequestError
from libs.kommo.payloads import MessageBody, NewMessage, Participant, content_to_message_body, encode_body


def test_participant_puts_phone_and_email_under_profile_and_omits_empties() -> None:
    full = Participant(
        "u-1", "Client", ref_id="k-1", avatar="https://a", profile_link="https://p", phone="7", email="e"
    )
    assert full.to_json() == {
        "id": "u-1",
        "ref_id": "k-1",
        "name": "Client",
        "avatar": "https://a",
        "profile": {"phone": "7", "email": "e"},
        "profile_link": "https://p",
    }
    assert Participant("u-1").to_json() == {"id": "u-1"}
    assert Participant("u-1", "C", email="e").to_json() == {"id": "u-1", "name": "C", "profile": {"email": "e"}}


def test_message_body_types_are_strict() -> None:
    picture = MessageBody("picture", media="https://f/a.jpg", file_name="a.jpg", file_size=12, text="look")
    assert picture.to_json() == {
        "type": "picture",
        "text": "look",
        "media": "https://f/a.jpg",
        "file_name": "a.jpg",
        "file_size": 12,
    }
    location = MessageBody("location", location=(55, 37.5)).to_json()
    assert location == {"type": "location", "location": {"lon": 37.5, "lat": 55.0}}
    assert isinstance(location["location"]["lat"], float)
    assert MessageBody("contact", contact=("Ann", "+1")).to_json() == {
        "type": "contact",
        "contact": {"name": "Ann", "phone": "+1"},
    }
    voice = MessageBody("voice", media="https://f/v.ogg", media_duration=4).to_json()
    assert voice == {"type": "voice", "media": "https://f/v.ogg", "media_duration": 4}


def test_file_types_always_carry_name_and_size() -> None:
    body = MessageBody("video", media="https://f/v.mp4", file_name="v.mp4").to_json()
    assert body["file_name"] == "v.mp4" and body["file_size"] == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"type": "gif", "text": "x"},
        {"type": "text"},
        {"type": "picture", "file_name": "a.jpg"},
        {"type": "file", "media": "https://f"},
        {"type": "location"},
        {"type": "contact", "contact": ("Ann", "")},
        {"type": "sticker"},
        {"type": "audio", "media": "https://f", "file_size": -1},
    ],
)
def test_message_body_rejects_what_amojo_would(kwargs: dict[str, object]) -> None:
    with pytest.raises(BadRequestError):
        MessageBody(**kwargs)  # type: ignore[arg-type]


def test_new_message_envelope() -> None:
    message = NewMessage(
        msgid="m-1",
        conversation_id="c-1",
        sender=Participant("u-1", "Client"),
        message=MessageBody("text", text="hi"),
        timestamp_ms=1_639_660_529_379,
        receiver=Participant("u-2", "Other"),
        source_external_id="src",
        conversation_ref_id="k-chat",
    )
    assert message.to_json() == {
        "event_type": "new_message",
        "payload": {
            "timestamp": 1_639_660_529,
            "msec_timestamp": 1_639_660_529_379,
            "msgid": "m-1",
            "conversation_id": "c-1",
            "conversation_ref_id": "k-chat",
            "sender": {"id": "u-1", "name": "Client"},
            "receiver": {"id": "u-2", "name": "Other"},
            "source": {"external_id": "src"},
            "message": {"type": "text", "text": "hi"},
            "silent": False,
        },
    }
    minimal = NewMessage("m", "c", Participant("u", "n"), MessageBody("text", text="t"), 1000).to_json()["payload"]
    assert set(minimal) == {"timestamp", "msec_timestamp", "msgid", "conversation_id", "sender", "message", "silent"}
    assert minimal["silent"] is False


@pytest.mark.parametrize(("msgid", "conversation_id", "ts"), [("", "c", 1), ("m", "", 1), ("m", "c", 0)])
def test_new_message_needs_ids_and_time(msgid: str, conversation_id: str, ts: int) -> None:
    with pytest.raises(BadRequestError):
        NewMessage(msgid, conversation_id, Participant("u", "n"), MessageBody("text", text="t"), ts)


def test_encode_body_is_compact_utf8_without_trailing_newline() -> None:
    encoded = encode_body({"a": "ы/b", "n": 1, "t": True})
    assert encoded == '{"a":"ы/b","n":1,"t":true}'.encode()
    assert json.loads(encoded) == {"a": "ы/b", "n": 1, "t": True}


# -- content_to_message_body


def test_text_content() -> None:
    content = content_pb2.Content(text=content_pb2.Text(body="hello"))
    assert content_to_message_body(content) == MessageBody("text", text="hello")


@pytest.mark.parametrize(
    ("kind", "expected_type"),
    [
        (content_pb2.MEDIA_KIND_PICTURE, "picture"),
        (content_pb2.MEDIA_KIND_VIDEO, "video"),
        (content_pb2.MEDIA_KIND_FILE, "file"),
        (content_pb2.MEDIA_KIND_VOICE, "voice"),
        (content_pb2.MEDIA_KIND_AUDIO, "audio"),
        (content_pb2.MEDIA_KIND_UNSPECIFIED, "file"),
    ],
)
def test_media_kinds(kind: content_pb2.MediaKind.ValueType, expected_type: str) -> None:
    media = content_pb2.Media(
        kind=kind, file_ref="https://files.test/x", file_name="x.bin", size=2048, caption="cap", duration_s=7
    )
    body = content_to_message_body(content_pb2.Content(media=media))
    assert body == MessageBody(
        expected_type, text="cap", media="https://files.test/x", file_name="x.bin", file_size=2048, media_duration=7
    )


def test_picture_without_name_gets_one_from_its_mime_type() -> None:
    media = content_pb2.Media(kind=content_pb2.MEDIA_KIND_PICTURE, file_ref="https://f/1", mime_type="image/png")
    body = content_to_message_body(content_pb2.Content(media=media))
    assert body.file_name == "picture.png" and body.to_json()["file_size"] == 0


def test_location_contact_and_sticker() -> None:
    location = content_pb2.Content(location=content_pb2.Location(lat=55.75, lon=37.61, name="Red Square"))
    assert content_to_message_body(location).to_json() == {
        "type": "location",
        "text": "Red Square",
        "location": {"lon": 37.61, "lat": 55.75},
    }
    contact = content_pb2.Content(contact=content_pb2.Contact(name="Ann", phone="+100"))
    assert content_to_message_body(contact) == MessageBody("contact", contact=("Ann", "+100"))
    sticker = content_pb2.Content(sticker=content_pb2.Sticker(file_ref="https://f/s.webp", emoji="🙂"))
    assert content_to_message_body(sticker) == MessageBody("sticker", media="https://f/s.webp")
    emoji_only = content_pb2.Content(sticker=content_pb2.Sticker(emoji="🙂"))
    assert content_to_message_body(emoji_only) == MessageBody("text", text="🙂")


@pytest.mark.parametrize(
    "content",
    [
        content_pb2.Content(),
        content_pb2.Content(text=content_pb2.Text(body="")),
        content_pb2.Content(media=content_pb2.Media(kind=content_pb2.MEDIA_KIND_PICTURE)),
        content_pb2.Content(sticker=content_pb2.Sticker()),
    ],
    ids=["empty", "empty-text", "media-without-ref", "empty-sticker"],
)
def test_untranslatable_content_is_a_bad_request(content: content_pb2.Content) -> None:
    with pytest.raises(BadRequestError):
        content_to_message_body(content)
