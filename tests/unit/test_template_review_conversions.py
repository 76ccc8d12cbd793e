"""A Kommo chat template submitted to Meta (names, markers, examples, header, buttons), the review request
hook Kommo posts form-encoded, and the destination token that stands in for the signature Kommo lacks."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.kommo.account_hooks import destination, hook_token, review_request, token_matches
from libs.kommo.emulator.account_webhooks import form_pairs
from libs.messengers.whatsapp.template_submission import meta_name, meta_template, submission
from libs.messengers.whatsapp.templates import template_message
from services.kommo_sender.template_reviews import header_format, platform_template
from services.router.reviewed_templates import kommo_template_of, platform_params

KOMMO_TEMPLATE = {
    "id": 7101,
    "account_id": 29_000_001,
    "name": "Pedido pronto – São Paulo!",
    "content": "Olá {{contact.name}}, o pedido {{lead.id}} está pronto. {{contact.name}}, obrigado!",
    "type": "waba",
    "buttons": [
        {"type": "inline", "text": "Quero retirar"},
        {"type": "url", "text": "Acompanhar", "url": "https://shop.example/track/{{lead.id}}"},
    ],
    "attachment": {"id": "a1", "name": "loja.jpg", "type": "picture", "is_external": False},
    "waba_header_type": "media",
    "waba_footer": "Loja Exemplo",
    "waba_category": "UTILITY",
    "waba_language": "pt_BR",
    "waba_examples": {"{{contact.name}}": "Ana", "{{lead.id}}": "1001"},
}


def test_kommo_names_become_meta_legal_names() -> None:
    assert meta_name("Pedido pronto – São Paulo!") == "pedido_pronto_sao_paulo"
    assert meta_name("  __Order #42__ ") == "order_42"
    assert meta_name("???", "kommo_template_7") == "kommo_template_7"
    assert len(meta_name("a" * 600)) == 512


def test_a_kommo_chat_template_becomes_metas_create_body() -> None:
    body = meta_template(platform_template(KOMMO_TEMPLATE))
    assert body == {
        "name": "pedido_pronto_sao_paulo",
        "language": "pt_BR",
        "category": "UTILITY",
        "components": [
            {"type": "HEADER", "format": "IMAGE"},
            {
                "type": "BODY",
                "text": "Olá {{1}}, o pedido {{2}} está pronto. {{1}}, obrigado!",
                "example": {"body_text": [["Ana", "1001"]]},
            },
            {"type": "FOOTER", "text": "Loja Exemplo"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Quero retirar"},
                    {
                        "type": "URL",
                        "text": "Acompanhar",
                        "url": "https://shop.example/track/{{1}}",
                        "example": ["https://shop.example/track/1001"],
                    },
                ],
            },
        ],
    }


def test_a_text_header_numbers_its_own_placeholders_and_missing_examples_are_named_after_the_marker() -> None:
    template = events_pb2.PlatformTemplate(
        name="Welcome",
        content="Hi {{contact.name}}",
        header_type="text",
        header="Order {{lead.id}}",
        category="marketing",
    )
    body = meta_template(template)
    assert body["language"] == "en_US" and body["category"] == "MARKETING"
    assert body["components"][0] == {
        "type": "HEADER",
        "format": "TEXT",
        "text": "Order {{1}}",
        "example": {"header_text": ["id"]},
    }
    assert body["components"][1]["example"] == {"body_text": [["name"]]}


def test_the_attachment_decides_the_media_header_format() -> None:
    assert header_format({"type": "video"}) == "VIDEO"
    assert header_format({"type": "file"}) == "DOCUMENT"
    assert header_format({"type": "picture"}) == "IMAGE"
    assert header_format(None) == "IMAGE"


def test_the_form_encoded_review_hook_names_its_waba_templates() -> None:
    pairs = form_pairs("add[0]", {"id": 7101, "type": "waba", "reviews": [{"id": 301, "status": "review"}]})
    pairs += form_pairs("add[1]", {"id": 7102, "type": "amocrm"})
    pairs += form_pairs("account", {"id": 29000001, "subdomain": "shop"})
    asked = review_request(urlencode(pairs).encode())
    assert asked.template_ids == (7101,)
    assert asked.kommo_account_id == 29000001
    assert review_request(b"garbage=&&&").template_ids == ()


def test_the_destination_token_is_the_scopes_and_needs_the_channel_secret() -> None:
    url = destination("https://bridge.example/", "channel-secret", "chan_acc")
    assert url == f"https://bridge.example/webhooks/kommo-account/chan_acc/{hook_token('channel-secret', 'chan_acc')}"
    token = url.rsplit("/", 1)[1]
    assert token_matches("channel-secret", "chan_acc", token)
    assert not token_matches("channel-secret", "chan_other", token)
    assert not token_matches("", "chan_acc", token)


def test_each_components_markers_are_kept_in_metas_order_and_a_send_takes_its_values_by_them() -> None:
    template = platform_template({**KOMMO_TEMPLATE, "waba_header_type": "text", "waba_header": "Pedido {{lead.id}}"})
    body, markers = submission(template)
    assert markers == {
        "header": ["{{lead.id}}"],
        "body": ["{{contact.name}}", "{{lead.id}}"],
        "button1": ["{{lead.id}}"],
    }
    params = [
        content_pb2.TemplateParam(key="{{ lead.id }}", value="1001"),
        content_pb2.TemplateParam(key="{{contact.name}}", value="Ana"),
    ]
    keyed = platform_params(params, markers)
    assert {(p.key, p.value) for p in keyed} == {
        ("header:{{1}}", "1001"),
        ("body:{{1}}", "Ana"),
        ("body:{{2}}", "1001"),
        ("button1:{{1}}", "1001"),
    }
    definition = {**body, "parameter_format": "POSITIONAL"}
    sent = template_message(
        content_pb2.Template(external_id="777:pedido_pronto_sao_paulo:pt_BR", params=keyed), definition
    )
    assert sent["components"] == [
        {"type": "header", "parameters": [{"type": "text", "text": "1001"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "1001"}]},
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "0",
            "parameters": [{"type": "payload", "payload": "Quero retirar"}],
        },
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "1001"}]},
    ]


def test_only_a_template_kommo_names_by_its_own_id_is_looked_up() -> None:
    def hook(template: dict[str, object]) -> bytes:
        return json.dumps({"message": {"message": {"type": "text", "text": "x", "template": template}}}).encode()

    assert kommo_template_of(hook({"id": 7101, "content": "x", "params": []})) == {
        "id": 7101,
        "content": "x",
        "params": [],
    }
    assert kommo_template_of(hook({"id": 7101, "external_id": "777:a:en_US"})) is None
    assert kommo_template_of(hook({"id": "7101"})) is None
    assert kommo_template_of(b"not json") is None
