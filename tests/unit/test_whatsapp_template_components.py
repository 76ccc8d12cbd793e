"""A manager's template message as Meta's components: a file in the header, texts in the header and body,
quick-reply payloads and a URL button's suffix; and the emulator refusing what Meta refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kommo_bridge.events.v1 import content_pb2

from libs import status_texts
from libs.errors import PermanentError
from libs.kommo.hooks import parse_hook
from libs.messengers.whatsapp.emulator_errors import GraphApiError
from libs.messengers.whatsapp.emulator_templates import TemplateStore
from libs.messengers.whatsapp.templates import template_message

WABA = "777"
ORDER_PHOTO: dict[str, Any] = {
    "name": "order_photo",
    "language": "en_US",
    "category": "UTILITY",
    "parameter_format": "POSITIONAL",
    "components": [
        {"type": "HEADER", "format": "IMAGE"},
        {"type": "BODY", "text": "Hi {{1}}, order {{2}} is packed."},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Looks good"},
                {"type": "URL", "text": "Track", "url": "https://track.example/{{1}}"},
                {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550001111"},
            ],
        },
    ],
}
NAMED_TEXT_HEADER: dict[str, Any] = {
    "name": "named_header",
    "language": "pt_BR",
    "category": "UTILITY",
    "parameter_format": "NAMED",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Pedido {{order_id}}"},
        {"type": "BODY", "text": "Olá {{first_name}}!"},
    ],
}


def picked(external_id: str, **values: str) -> content_pb2.Template:
    return content_pb2.Template(
        external_id=external_id,
        params=[content_pb2.TemplateParam(key="{{" + k + "}}", value=v) for k, v in values.items()],
    )


def test_an_image_header_body_quick_reply_and_url_suffix_become_metas_components() -> None:
    template = picked(f"{WABA}:order_photo:en_US", **{"1": "Ana", "2": "A-1001"})
    message = template_message(template, ORDER_PHOTO, {"link": "https://files.example/p.jpg"})
    assert message == {
        "name": "order_photo",
        "language": {"code": "en_US"},
        "components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://files.example/p.jpg"}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "A-1001"}]},
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "0",
                "parameters": [{"type": "payload", "payload": "Looks good"}],
            },
            {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "Ana"}]},
        ],
    }


def test_a_media_header_without_a_file_is_refused_in_the_managers_words() -> None:
    template = picked(f"{WABA}:order_photo:en_US", **{"1": "Ana", "2": "A-1001"})
    with pytest.raises(PermanentError) as refused:
        template_message(template, ORDER_PHOTO, None)
    assert refused.value.reason == status_texts.TEMPLATE_HEADER_MEDIA_MISSING
    for language in ("en", "es", "pt"):
        text = status_texts.render(refused.value.reason, refused.value.reason_args, language)
        assert "order_photo" in text and "WhatsApp" in text and "{" not in text


def test_a_named_text_header_takes_its_value_from_the_params() -> None:
    template = picked(f"{WABA}:named_header:pt_BR", order_id="77", first_name="Rui")
    message = template_message(template, NAMED_TEXT_HEADER)
    assert message["components"] == [
        {"type": "header", "parameters": [{"type": "text", "text": "77", "parameter_name": "order_id"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Rui", "parameter_name": "first_name"}]},
    ]


def test_a_url_button_without_a_value_for_its_suffix_is_refused() -> None:
    definition = {
        **ORDER_PHOTO,
        "components": [
            {"type": "BODY", "text": "Hello"},
            {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Go", "url": "https://x.example/{{1}}"}]},
        ],
    }
    with pytest.raises(PermanentError) as refused:
        template_message(picked(f"{WABA}:order_photo:en_US"), definition)
    assert refused.value.reason == status_texts.TEMPLATE_REFUSED


def test_the_hooks_file_next_to_a_template_is_its_header_media() -> None:
    body = {
        "account_id": "acc",
        "time": 1,
        "message": {
            "receiver": {"id": "r", "client_id": "c"},
            "sender": {"id": "s"},
            "conversation": {"id": "chat", "client_id": "conv"},
            "timestamp": 1,
            "message": {
                "id": "m1",
                "type": "picture",
                "text": "Hi Ana, order A-1001 is packed.",
                "media": "https://amojo.example/attachments/p.jpg",
                "file_name": "p.jpg",
                "file_size": 2048,
                "template": {
                    "id": 7103,
                    "external_id": f"{WABA}:order_photo:en_US",
                    "content": "Hi {{1}}",
                    "params": [],
                },
            },
        },
    }
    event = parse_hook(json.dumps(body).encode(), "scope")
    template = event.content.template  # type: ignore[union-attr]
    assert template.header_media.file_ref == "https://amojo.example/attachments/p.jpg"
    assert (template.header_media.kind, template.header_media.size) == (content_pb2.MEDIA_KIND_PICTURE, 2048)
    assert template.header_media.caption == ""


@pytest.fixture
def store() -> TemplateStore:
    templates = TemplateStore(lambda: 0.0)
    made = templates.create(WABA, ORDER_PHOTO)
    templates.review(made, "APPROVED")
    return templates


def graph_error(store: TemplateStore, message: dict[str, Any]) -> GraphApiError:
    with pytest.raises(GraphApiError) as failed:
        store.check_send(WABA, message)
    return failed.value


def test_the_emulator_takes_what_meta_takes(store: TemplateStore) -> None:
    template = picked(f"{WABA}:order_photo:en_US", **{"1": "Ana", "2": "A-1001"})
    message = template_message(template, store.find(WABA, "order_photo", "en_US").to_json(), {"id": "9001"})  # type: ignore[union-attr]
    assert store.check_send(WABA, message).name == "order_photo"


def test_the_emulator_refuses_what_meta_refuses(store: TemplateStore) -> None:
    template = picked(f"{WABA}:order_photo:en_US", **{"1": "Ana", "2": "A-1001"})
    good = template_message(template, ORDER_PHOTO, {"id": "9001"})
    no_header = {**good, "components": [c for c in good["components"] if c["type"] != "header"]}
    assert graph_error(store, no_header).code == 132012
    no_url = {**good, "components": [c for c in good["components"] if c.get("sub_type") != "url"]}
    assert graph_error(store, no_url).code == 131008
    wrong_index = [{**c, "index": "2"} if c.get("sub_type") == "quick_reply" else c for c in good["components"]]
    assert graph_error(store, {**good, "components": wrong_index}).code == 131009
    one_body_param = [
        {**c, "parameters": c["parameters"][:1]} if c["type"] == "body" else c for c in good["components"]
    ]
    assert graph_error(store, {**good, "components": one_body_param}).code == 132000
