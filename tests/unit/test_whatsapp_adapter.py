"""The WhatsApp adapter's inbound side: the webhook signature over the exact bytes, the GET handshake, and
every kind of notification (reference/messenger-apis.md §2) into canonical events."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs import status_texts
from libs.errors import AuthError, BadRequestError, MissingCredentialError, NotFoundError
from libs.messengers.registry import adapter_for, adapter_named
from libs.messengers.whatsapp.adapter import WhatsAppAdapter, verification_challenge, verify_signature
from libs.messengers.whatsapp.inbound import DELETED_NOTE
from libs.secret_names import MESSENGER_APP_SECRET

APP_SECRET = "3f1c2e4d5b6a79880a1b2c3d4e5f6071"
CONNECTION = "0b5c3e0e-5a52-4d7e-9d38-6a3c4b1c2d10"
WA_ID = "972987654321"
BSUID = "US.13491208655302741918"
CONTACT = {
    "profile": {"name": "Ann", "username": "ann.x"},
    "wa_id": WA_ID,
    "user_id": BSUID,
    "parent_user_id": "US.ENT.11815799212886844830",
}
adapter = WhatsAppAdapter()


def notification(
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15551234567", "phone_number_id": "1122334455667"},
        "contacts": [CONTACT] if contacts is None else contacts,
    }
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }


def message(kind: str, content: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"from": WA_ID, "id": f"wamid.{kind}1", "timestamp": "1697043223", "type": kind, **extra}
    if content is not None:
        body[kind] = content
    return body


def parse(payload: dict[str, Any]) -> list[events_pb2.InboundMessage]:
    return adapter.parse_webhook(json.dumps(payload).encode(), CONNECTION)


def one(payload: dict[str, Any]) -> events_pb2.InboundMessage:
    events = parse(payload)
    assert len(events) == 1, events
    return events[0]


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


# ---------------------------------------------------------------------------------------------------------
# Verification


def test_the_registry_knows_whatsapp_and_its_post_key_is_the_app_secret() -> None:
    assert adapter_named("whatsapp") is adapter_for(content_pb2.PLATFORM_WHATSAPP)
    assert adapter.webhook_secret_kind == MESSENGER_APP_SECRET


def test_a_body_signed_with_the_app_secret_passes() -> None:
    # Meta sends unicode-escaped JSON and signs exactly those bytes.
    body = json.dumps(notification([message("text", {"body": "Olá, ¿qué tal? 👋"})]), ensure_ascii=True).encode()
    verify_signature(signed(body), body, APP_SECRET)
    verify_signature(
        {"x-hub-signature-256": signed(body)["X-Hub-Signature-256"].upper().replace("SHA256=", "sha256=")},
        body,
        APP_SECRET,
    )


def test_a_forged_or_reserialised_body_fails() -> None:
    payload = notification([message("text", {"body": "Olá 👋"})])
    body = json.dumps(payload, ensure_ascii=True).encode()
    headers = signed(body)
    # The same JSON written again (unescaped unicode, other spacing) is other bytes: it must not pass.
    reserialised = json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(reserialised) == json.loads(body)
    with pytest.raises(AuthError):
        verify_signature(headers, reserialised, APP_SECRET)
    with pytest.raises(AuthError):
        verify_signature(headers, body.replace(b"Ol", b"Hi"), APP_SECRET)
    with pytest.raises(AuthError):
        verify_signature(signed(body, "another-apps-secret"), body, APP_SECRET)
    with pytest.raises(AuthError):
        verify_signature(
            {"X-Hub-Signature-256": headers["X-Hub-Signature-256"].removeprefix("sha256=")}, body, APP_SECRET
        )


def test_a_missing_signature_or_app_secret_never_passes() -> None:
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    with pytest.raises(MissingCredentialError):
        verify_signature({}, body, APP_SECRET)
    # The legacy SHA-1 header alone is not enough.
    with pytest.raises(MissingCredentialError):
        verify_signature(
            {"X-Hub-Signature": "sha1=" + hmac.new(b"k", body, hashlib.sha1).hexdigest()}, body, APP_SECRET
        )
    with pytest.raises(AuthError):
        verify_signature(signed(body, ""), body, "")


def test_the_handshake_echoes_the_challenge_only_for_the_right_token() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"}
    assert verification_challenge(query, "verify-me") == "1158201444"
    assert adapter.verify_handshake(query, "verify-me") == "1158201444"
    for wrong in (
        {**query, "hub.verify_token": "verify-you"},
        {**query, "hub.mode": "unsubscribe"},
        {k: v for k, v in query.items() if k != "hub.verify_token"},
        {k: v for k, v in query.items() if k != "hub.challenge"},
    ):
        with pytest.raises(AuthError):
            verification_challenge(wrong, "verify-me")
    with pytest.raises(AuthError):
        verification_challenge({**query, "hub.verify_token": ""}, "")


def test_telegram_makes_no_handshake() -> None:
    with pytest.raises(NotFoundError):
        adapter_named("telegram").verify_handshake({"hub.mode": "subscribe"}, "secret")


# ---------------------------------------------------------------------------------------------------------
# Messages


def test_the_reference_envelope_becomes_a_text_event() -> None:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "<WABA_ID>",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15551234567", "phone_number_id": "1122334455667"},
                            "contacts": [CONTACT],
                            "messages": [
                                {
                                    "from": WA_ID,
                                    "id": "wamid.HBgL",
                                    "timestamp": "1697043223",
                                    "type": "text",
                                    "text": {"body": "Hi"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    event = one(payload)
    assert event.event_id == f"whatsapp:{CONNECTION}:wamid.HBgL"
    assert event.platform == content_pb2.PLATFORM_WHATSAPP
    assert (event.connection_id, event.chat_id, event.sender_id) == (CONNECTION, WA_ID, WA_ID)
    assert event.platform_message_id == "wamid.HBgL"
    assert event.sent_at_ms == 1697043223000
    assert event.content.text.body == "Hi"
    assert (event.sender.name, event.sender.username, event.sender.phone) == ("Ann", "ann.x", f"+{WA_ID}")
    assert json.loads(event.raw)["id"] == "wamid.HBgL"


@pytest.mark.parametrize(
    ("kind", "content", "expected"),
    [
        (
            "image",
            {"caption": "look", "mime_type": "image/jpeg", "sha256": "4654+8g=", "id": "65463453"},
            content_pb2.Media(
                kind=content_pb2.MEDIA_KIND_PICTURE, file_ref="65463453", mime_type="image/jpeg", caption="look"
            ),
        ),
        (
            "video",
            {"caption": "caption", "mime_type": "video/mp4", "sha256": "Jh+2", "id": "765756756"},
            content_pb2.Media(
                kind=content_pb2.MEDIA_KIND_VIDEO, file_ref="765756756", mime_type="video/mp4", caption="caption"
            ),
        ),
        (
            "document",
            {
                "caption": "caption",
                "filename": "filename.pdf",
                "mime_type": "application/pdf",
                "sha256": "grwf",
                "id": "1234",
            },
            content_pb2.Media(
                kind=content_pb2.MEDIA_KIND_FILE,
                file_ref="1234",
                file_name="filename.pdf",
                mime_type="application/pdf",
                caption="caption",
            ),
        ),
        (
            "audio",
            {"mime_type": "audio/ogg; codecs=opus", "sha256": "E3dx", "id": "4321", "voice": False},
            content_pb2.Media(kind=content_pb2.MEDIA_KIND_AUDIO, file_ref="4321", mime_type="audio/ogg"),
        ),
    ],
)
def test_files_become_media_named_by_their_media_id(
    kind: str, content: dict[str, Any], expected: content_pb2.Media
) -> None:
    event = one(notification([message(kind, content)]))
    assert event.content.media == expected


def test_a_voice_note_is_audio_with_voice_true() -> None:
    voice = {"mime_type": "audio/ogg; codecs=opus", "sha256": "m04p", "id": "555", "voice": True}
    event = one(notification([message("audio", voice)]))
    assert event.content.media.kind == content_pb2.MEDIA_KIND_VOICE
    assert event.content.media.mime_type == "audio/ogg"


def test_a_sticker_static_or_animated() -> None:
    for animated in (False, True):
        sticker = {"mime_type": "image/webp", "sha256": "OmT4", "id": "98765", "animated": animated}
        event = one(notification([message("sticker", sticker)]))
        assert event.content.sticker == content_pb2.Sticker(file_ref="98765", mime_type="image/webp")


def test_locations_current_and_chosen() -> None:
    current = one(notification([message("location", {"latitude": 12.25089, "longitude": 43.90539})]))
    assert (current.content.location.lat, current.content.location.lon, current.content.location.name) == (
        12.25089,
        43.90539,
        "",
    )
    place = {
        "latitude": 37.4611978,
        "longitude": -122.2164385,
        "name": "Facebook HQ",
        "address": "1 Hacker Way, Menlo Park, CA 94025",
        "url": "https://maps.google.com/?cid=2000000000000000000",
    }
    chosen = one(notification([message("location", place)]))
    assert chosen.content.location.name == "Facebook HQ, 1 Hacker Way, Menlo Park, CA 94025"


def test_one_shared_contact_is_a_card_and_several_are_listed() -> None:
    chandler = {
        "name": {"first_name": "Chandler", "last_name": "Bing", "formatted_name": "Chandler Bing"},
        "phones": [{"phone": "+1 555-555-5555", "wa_id": "15555555555", "type": "CELL"}],
    }
    monica = {
        "name": {"first_name": "Monica", "formatted_name": "Monica"},
        "phones": [{"phone": "+1 666-666-6666", "type": "HOME"}],
    }
    single = one(notification([message("contacts", None, contacts=[chandler])]))
    assert single.content.contact == content_pb2.Contact(name="Chandler Bing", phone="+1 555-555-5555")
    several = one(notification([message("contacts", None, contacts=[chandler, monica])]))
    assert several.content.text.body == "[contacts]\nChandler Bing: +1 555-555-5555\nMonica: +1 666-666-6666"


def test_button_and_list_replies_carry_the_chosen_id_as_callback_data() -> None:
    button = message(
        "interactive",
        {"type": "button_reply", "button_reply": {"id": "yes-42", "title": "Yes"}},
        context={"from": "15551234567", "id": "wamid.asked"},
    )
    event = one(notification([button]))
    assert (event.content.text.body, event.content.text.callback_data) == ("Yes", "yes-42")
    assert event.reply_to_platform_message_id == "wamid.asked"
    row = {"type": "list_reply", "list_reply": {"id": "row-2", "title": "Tuesday", "description": "after 5 pm"}}
    listed = one(notification([message("interactive", row)]))
    assert (listed.content.text.body, listed.content.text.callback_data) == ("Tuesday", "row-2")
    quick = one(notification([message("button", {"payload": "STOP_PROMOS", "text": "Stop promotions"})]))
    assert (quick.content.text.body, quick.content.text.callback_data) == ("Stop promotions", "STOP_PROMOS")


def test_a_reply_names_the_quoted_message_and_a_forward_does_not() -> None:
    reply = one(
        notification(
            [message("text", {"body": "replied text"}, context={"from": "15551234567", "id": "wamid.quoted=="})]
        )
    )
    assert reply.reply_to_platform_message_id == "wamid.quoted=="
    forwarded = one(notification([message("text", {"body": "fwd"}, context={"forwarded": True})]))
    assert forwarded.reply_to_platform_message_id == ""


def test_a_reaction_and_its_removal() -> None:
    added = one(notification([message("reaction", {"message_id": "wamid.target=", "emoji": "😮"})]))
    assert added.reaction == events_pb2.ReactionChange(target_platform_message_id="wamid.target=", added=["😮"])
    for removal in ({"message_id": "wamid.target=", "emoji": ""}, {"message_id": "wamid.target="}):
        removed = one(notification([message("reaction", removal)]))
        # WhatsApp does not say which reaction was taken back: the client's one, whichever it was.
        assert removed.reaction == events_pb2.ReactionChange(target_platform_message_id="wamid.target=", removed=[""])


def test_an_edit_changes_the_original_message() -> None:
    edited = {
        "original_message_id": "wamid.original=",
        "message": {
            "context": {"id": "M0"},
            "type": "image",
            "image": {
                "caption": "Updated image caption",
                "mime_type": "image/jpeg",
                "sha256": "a1b2",
                "id": "1234567890",
            },
        },
    }
    event = one(notification([message("edit", edited, id="wamid.editevent")]))
    assert event.event_id == f"whatsapp:{CONNECTION}:wamid.editevent"
    assert event.platform_message_id == "wamid.original="
    assert event.edited.media.caption == "Updated image caption"
    assert event.edited.media.file_ref == "1234567890"


def test_a_revoke_marks_the_original_deleted() -> None:
    event = one(notification([message("revoke", {"original_message_id": "wamid.gone="}, id="wamid.revoke")]))
    assert event.platform_message_id == "wamid.gone="
    assert event.edited.text.body == DELETED_NOTE


def test_unsupported_and_order_messages_still_reach_the_manager() -> None:
    errors = [
        {
            "code": 131051,
            "title": "Message type unknown",
            "error_data": {"details": "Message type is currently not supported."},
        }
    ]
    unsupported = one(notification([message("unsupported", {"type": "poll"}, errors=errors)]))
    assert unsupported.content.text.body == "[unsupported WhatsApp message: poll]"
    order = {
        "catalog_id": "354160437058781",
        "text": "fast please",
        "product_items": [{"product_retailer_id": "HAMBURGER", "quantity": 3, "item_price": 30, "currency": "ILS"}],
    }
    ordered = one(notification([message("order", order)]))
    assert ordered.content.text.body == "[order]\n3 × HAMBURGER (30 ILS)\nfast please"


def test_system_messages_and_other_fields_carry_no_event() -> None:
    # A number change is an event (tests/unit/test_whatsapp_identity.py); other system notes are not.
    changed = {
        "from": WA_ID,
        "id": "wamid.sys",
        "timestamp": "1753851315",
        "type": "system",
        "system": {"body": "User A's security code changed", "identity": "abc", "type": "customer_identity_changed"},
    }
    assert parse(notification([changed], contacts=[])) == []
    account_update = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "account_update", "value": {"event": "X"}}]}],
    }
    assert parse(account_update) == []
    template_review = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "time": 1751247548,
                "changes": [
                    {
                        "field": "message_template_status_update",
                        "value": {
                            "event": "APPROVED",
                            "message_template_id": 1689556908129832,
                            "message_template_name": "order_confirmation",
                            "message_template_language": "en_US",
                            "reason": "NONE",
                            "message_template_category": "UTILITY",
                        },
                    }
                ],
            }
        ],
    }
    (review,) = parse(template_review)  # not a client's: the router mirrors it into Kommo's templates
    assert review.WhichOneof("event") == "template_status" and not review.chat_id


def test_a_user_known_by_bsuid_only_and_one_with_both_ids_keep_a_stable_id() -> None:
    hidden = {"profile": {"name": "Zoe", "username": "zoe"}, "user_id": "US.777"}
    only_bsuid = one(
        notification(
            [
                {
                    "from_user_id": "US.777",
                    "id": "wamid.z",
                    "timestamp": "1697043223",
                    "type": "text",
                    "text": {"body": "hi"},
                }
            ],
            contacts=[hidden],
        )
    )
    assert (only_bsuid.chat_id, only_bsuid.sender_id, only_bsuid.sender.phone) == ("US.777", "US.777", "")
    # A user with a number is known by it, whether the message names the number, the BSUID, or both.
    for sender in ({"from": WA_ID}, {"from_user_id": BSUID}, {"from": WA_ID, "from_user_id": BSUID}):
        event = one(
            notification(
                [{**sender, "id": "wamid.b", "timestamp": "1697043223", "type": "text", "text": {"body": "hi"}}]
            )
        )
        assert event.sender_id == event.chat_id == WA_ID


def test_one_post_with_several_messages_and_statuses_gives_every_event_in_order() -> None:
    second_client = {"profile": {"name": "Bob"}, "wa_id": "15550001111", "user_id": "US.2"}
    payload = notification(
        [
            message("text", {"body": "one"}, id="wamid.1"),
            {**message("text", {"body": "two"}, id="wamid.2"), "from": "15550001111"},
        ],
        [{"id": "wamid.out", "status": "delivered", "timestamp": "1698266945", "recipient_id": WA_ID}],
        contacts=[CONTACT, second_client],
    )
    payload["entry"].append(notification([message("text", {"body": "three"}, id="wamid.3")])["entry"][0])
    events = parse(payload)
    assert [e.platform_message_id for e in events] == ["wamid.1", "wamid.2", "wamid.out", "wamid.3"]
    assert [e.sender.name for e in events] == ["Ann", "Bob", "Ann", "Ann"]
    assert events[2].receipt.state == events_pb2.DELIVERY_STATE_DELIVERED


# ---------------------------------------------------------------------------------------------------------
# Statuses


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("sent", events_pb2.DELIVERY_STATE_SENT),
        ("delivered", events_pb2.DELIVERY_STATE_DELIVERED),
        ("read", events_pb2.DELIVERY_STATE_READ),
        ("played", events_pb2.DELIVERY_STATE_READ),
    ],
)
def test_statuses_become_receipts(status: str, state: events_pb2.DeliveryState.ValueType) -> None:
    entry = {
        "id": "wamid.xyzxyz",
        "status": status,
        "timestamp": "1698266945",
        "recipient_id": WA_ID,
        "biz_opaque_callback_data": "crm-123",
        "pricing": {"billable": True, "pricing_model": "PMP", "category": "service"},
    }
    event = one(notification(statuses=[entry]))
    assert event.event_id == f"whatsapp:{CONNECTION}:wamid.xyzxyz:{status}:1698266945"
    assert (event.chat_id, event.platform_message_id, event.sent_at_ms) == (WA_ID, "wamid.xyzxyz", 1698266945000)
    assert event.receipt == events_pb2.PlatformReceipt(platform_message_id="wamid.xyzxyz", state=state)


def failed(code: int, title: str, details: str) -> events_pb2.PlatformReceipt:
    entry = {
        "id": "wamid.f",
        "status": "failed",
        "timestamp": "1689380458",
        "recipient_id": WA_ID,
        "errors": [{"code": code, "title": title, "message": title, "error_data": {"details": details}}],
    }
    return one(notification(statuses=[entry])).receipt


def test_a_closed_window_says_a_template_is_needed() -> None:
    receipt = failed(131047, "Re-engagement message", "Message failed to send because more than 24 hours have passed")
    assert receipt.state == events_pb2.DELIVERY_STATE_FAILED
    assert (receipt.reason, dict(receipt.reason_args), receipt.platform_error_code) == (
        status_texts.WINDOW_CLOSED,
        {"platform": "whatsapp"},
        131047,
    )
    assert "template" in status_texts.render(receipt.reason, receipt.reason_args, "en")


def test_an_undeliverable_number_is_kommos_904() -> None:
    receipt = failed(131026, "Message undeliverable", "Unable to deliver message")
    assert receipt.reason == status_texts.RECIPIENT_UNDELIVERABLE
    assert status_texts.code_of(receipt.reason) == 904


def test_template_and_other_failures_name_what_went_wrong() -> None:
    paused = failed(132015, "Template is Paused", "template x is paused")
    assert paused.reason == status_texts.TEMPLATE_REFUSED
    assert paused.reason_args["detail"] == "the template is paused for low quality"
    experiment = failed(
        130472,
        "User's number is part of an experiment",
        "Failed to send message because this user's phone number is part of an experiment",
    )
    assert experiment.reason == status_texts.PLATFORM_REFUSED
    assert dict(experiment.reason_args) == {
        "platform": "whatsapp",
        "detail": "Failed to send message because this user's phone number is part of an experiment",
    }
    assert experiment.error_text.startswith("WhatsApp error 130472")


def test_group_and_unknown_statuses_are_ignored() -> None:
    group = {
        "id": "wamid.g",
        "status": "read",
        "timestamp": "1698266945",
        "recipient_id": "grp",
        "recipient_type": "group",
    }
    deleted = {"id": "wamid.d", "status": "deleted", "timestamp": "1698266945", "recipient_id": WA_ID}
    assert parse(notification(statuses=[group, deleted])) == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"object":"page","entry":[]}',
        json.dumps(
            notification([{"from": WA_ID, "timestamp": "1", "type": "text", "text": {"body": "no id"}}])
        ).encode(),
        json.dumps(notification([message("text", {"body": "x"}, timestamp=1697043223.5)])).encode(),
        json.dumps(
            notification([{"id": "wamid.x", "timestamp": "1", "type": "text", "text": {"body": "nobody"}}], contacts=[])
        ).encode(),
    ],
)
def test_malformed_notifications_are_refused(body: bytes) -> None:
    with pytest.raises(BadRequestError):
        adapter.parse_webhook(body, CONNECTION)
