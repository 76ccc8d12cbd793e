"""Kommo's `markup` (§9: inline buttons, link buttons, a Salesbot's `list_message`) read from a message hook,
and the client's choice going back to amojo as `message.callback_data`."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kommo_bridge.events.v1 import content_pb2

from libs.errors import BadRequestError
from libs.kommo.hooks import parse_chat_hook
from libs.kommo.markup import parse_markup
from libs.kommo.payloads import content_to_message_body
from libs.messengers.choices import choice_lines

SCOPE_ID = "344a5002-f8ca-454d-af3d-396180102ac7_52e591f7-c98f-4255-8495-827210138c81"
SLOTS: dict[str, Any] = {
    "header": "Delivery",
    "body": "When should we come?",
    "footer": "Times are local",
    "button": "Pick a day",
    "sections": [
        {
            "title": "This week",
            "rows": [
                {"callback_data": "tue", "title": "Tuesday", "description": "after 5 pm"},
                {"callback_data": "wed", "title": "Wednesday"},
            ],
        },
        {"title": "Next week", "rows": [{"callback_data": 7, "title": "Monday"}]},
    ],
}


def hook(message: dict[str, Any]) -> bytes:
    body = {
        "account_id": "52e591f7-c98f-4255-8495-827210138c81",
        "message": {
            "receiver": {"id": "2ed64e26", "client_id": "my_int-1376"},
            "sender": {"id": "76fc2bea"},
            "conversation": {"id": "8e4d4baa", "client_id": "my_int-d5a4"},
            "msec_timestamp": 1639572260980,
            "message": {"id": "0371a0ff", "type": "text", **message},
        },
    }
    return json.dumps(body, ensure_ascii=False).encode()


def content_of(message: dict[str, Any]) -> content_pb2.Content:
    event = parse_chat_hook(hook(message), SCOPE_ID)
    assert event is not None
    return event.content


def test_inline_buttons_become_rows_of_reply_and_link_buttons_answering_with_their_text() -> None:
    markup = {"mode": "inline", "buttons": [[{"text": "Accept"}, {"text": "Site", "url": "https://shop.example/x"}]]}
    content = content_of({"text": "Your order?", "markup": markup})
    assert content.text.body == "Your order?"
    [row] = content.text.choices.buttons.rows
    assert list(row.buttons) == [
        content_pb2.Button(text="Accept", callback_data="Accept"),
        content_pb2.Button(text="Site", url="https://shop.example/x"),
    ]


def test_a_flat_array_of_buttons_is_one_row() -> None:
    content = content_of({"text": "Pick", "markup": {"mode": "inline", "buttons": [{"text": "A"}, {"text": "B"}]}})
    assert [[b.text for b in r.buttons] for r in content.text.choices.buttons.rows] == [["A", "B"]]


@pytest.mark.parametrize("markup", [None, {}, {"mode": "inline", "buttons": []}, {"mode": "inline", "buttons": [[]]}])
def test_null_absent_or_empty_markup_is_a_plain_text(markup: dict[str, Any] | None) -> None:
    content = content_of({"text": "Hello", "markup": markup})
    assert content == content_pb2.Content(text=content_pb2.Text(body="Hello"))
    assert content_of({"text": "Hello"}) == content


def test_a_salesbot_list_message_replaces_the_buttons_and_its_body_is_the_text() -> None:
    content = content_of(
        {"text": "", "markup": {"list_message": SLOTS, "mode": "inline", "buttons": [[{"text": "x"}]]}}
    )
    assert content.text.body == "When should we come?"
    listed = content.text.choices.list
    assert (listed.header, listed.footer, listed.button) == ("Delivery", "Times are local", "Pick a day")
    assert [s.title for s in listed.sections] == ["This week", "Next week"]
    assert list(listed.sections[0].rows) == [
        content_pb2.ChoiceRow(callback_data="tue", title="Tuesday", description="after 5 pm"),
        content_pb2.ChoiceRow(callback_data="wed", title="Wednesday"),
    ]
    assert listed.sections[1].rows[0].callback_data == "7"  # a numeric value, as a string
    # Without a list body, the hook's text is the message.
    no_body = {k: v for k, v in SLOTS.items() if k != "body"}
    assert content_of({"text": "Choose", "markup": {"list_message": no_body}}).text.body == "Choose"


def test_buttons_sent_with_a_file_follow_in_its_caption() -> None:
    message = {
        "type": "picture",
        "text": "New model",
        "media": "https://amojo.example/a.jpg",
        "markup": {"buttons": [[{"text": "Buy"}, {"text": "Specs", "url": "https://shop.example/specs"}]]},
    }
    assert content_of(message).media.caption == "New model\n\n• Buy\n• Specs: https://shop.example/specs"


@pytest.mark.parametrize(
    ("markup", "error"),
    [
        ("buttons", "message.message.markup must be an object or null, is a str"),
        ({"buttons": {"text": "A"}}, "message.message.markup.buttons must be an array of rows of buttons"),
        ({"buttons": [["A"]]}, r"message.message.markup.buttons\[0\]\[0\] must be an object"),
        ({"buttons": [[{"text": "A"}], "B"]}, r"message.message.markup.buttons\[1\] must be an array of buttons"),
        ({"buttons": [[{"text": ""}]]}, r"message.message.markup.buttons\[0\]\[0\].text is missing or empty"),
        ({"buttons": [[{"text": "Go", "url": "javascript:x"}]]}, r"buttons\[0\]\[0\].url must be an http\(s\) link"),
        ({"list_message": "x"}, "message.message.markup.list_message must be an object"),
        ({"list_message": {"body": "b", "sections": []}}, "list_message.sections must be a non-empty array"),
        (
            {"list_message": {"body": "b", "sections": [{"title": "t", "rows": []}]}},
            r"list_message.sections\[0\].rows must be a non-empty array",
        ),
        (
            {"list_message": {"body": "b", "sections": [{"rows": [{"title": "Tue"}]}]}},
            r"list_message.sections\[0\].rows\[0\].callback_data is missing or empty",
        ),
        (
            {"list_message": {"body": "b", "sections": [{"rows": [{"callback_data": "t", "title": 3}]}]}},
            r"list_message.sections\[0\].rows\[0\].title must be a string, is a int",
        ),
    ],
)
def test_malformed_markup_is_named_by_field_and_the_message_still_goes_as_its_text(
    markup: Any, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(BadRequestError, match=error):
        parse_markup(markup, "message.message.markup")
    # Kommo never sends a hook again: a refusal would lose the manager's message, so only the choices go.
    content = content_of({"text": "Pick", "markup": markup})
    listed = markup.get("list_message") if isinstance(markup, dict) else None
    body = listed["body"] if isinstance(listed, dict) else "Pick"  # a list's body is its message
    assert content.text.body == body and not content.text.HasField("choices")
    assert any(re.search(error, record.getMessage() + str(getattr(record, "error", ""))) for record in caplog.records)


@pytest.mark.parametrize("markup", [[], {}, "", None])
def test_empty_markup_as_php_writes_it_is_no_markup(markup: Any) -> None:
    content = content_of({"text": "Hello", "markup": markup})
    assert content.text.body == "Hello" and not content.text.HasField("choices")


def test_a_malformed_list_still_gives_its_body_as_the_message() -> None:
    broken = {"list_message": {"body": "Which day suits you?", "sections": "soon"}}
    content = content_of({"text": "", "markup": broken})
    assert content.text.body == "Which day suits you?" and not content.text.HasField("choices")


def test_a_list_without_body_or_text_is_refused() -> None:
    empty = {k: v for k, v in SLOTS.items() if k != "body"}
    with pytest.raises(BadRequestError, match=r"text message without message\.message\.text"):
        content_of({"text": "", "markup": {"list_message": empty}})


def test_the_clients_choice_goes_to_kommo_as_callback_data_beside_its_title() -> None:
    chosen = content_pb2.Content(text=content_pb2.Text(body="Tuesday", callback_data="tue"))
    assert content_to_message_body(chosen).to_json() == {"type": "text", "text": "Tuesday", "callback_data": "tue"}
    plain = content_pb2.Content(text=content_pb2.Text(body="Hi"))
    assert content_to_message_body(plain).to_json() == {"type": "text", "text": "Hi"}


def test_choices_as_text_lines_keep_every_option() -> None:
    content = content_of({"text": "", "markup": {"list_message": SLOTS}})
    assert choice_lines(content.text.choices) == [
        "This week",
        "1. Tuesday – after 5 pm",
        "2. Wednesday",
        "Next week",
        "3. Monday",
    ]
