"""A manager's buttons and lists into WhatsApp interactive messages (reference/messenger-apis.md §2): reply
buttons, a list when there are more than three, a link button (`cta_url`), WhatsApp's limits (labels
shortened, what cannot be shortened refused with a status text), checked against the Cloud API emulator on a
real socket, and the client's tap coming back with the option's id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kommo_bridge.events.v1 import content_pb2

from libs import status_texts
from libs.errors import PermanentError
from libs.messengers.whatsapp.interactive import interactive_object
from tests.support import wait_for
from tests.unit.whatsapp_support import ANN_WA_ID, World, whatsapp_world


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with whatsapp_world() as world:
        yield world


def buttons(body: str, *rows: list[tuple[str, str]]) -> content_pb2.Text:
    """A text with rows of buttons `(text, url)`; a reply button answers with its text, as Kommo's do."""
    return content_pb2.Text(
        body=body,
        choices=content_pb2.Choices(
            buttons=content_pb2.ButtonRows(
                rows=[
                    content_pb2.ButtonRow(
                        buttons=[content_pb2.Button(text=t, url=u, callback_data="" if u else t) for t, u in row]
                    )
                    for row in rows
                ]
            )
        ),
    )


def listed(body: str, sections: list[tuple[str, list[tuple[str, str, str]]]], **fields: str) -> content_pb2.Text:
    return content_pb2.Text(
        body=body,
        choices=content_pb2.Choices(
            list=content_pb2.ChoiceList(
                sections=[
                    content_pb2.ChoiceSection(
                        title=title,
                        rows=[content_pb2.ChoiceRow(callback_data=i, title=t, description=d) for i, t, d in rows],
                    )
                    for title, rows in sections
                ],
                **fields,
            )
        ),
    )


def refusal(text: content_pb2.Text) -> PermanentError:
    with pytest.raises(PermanentError) as refused:
        interactive_object(text)
    assert refused.value.reason == status_texts.CHOICES_UNSUPPORTED
    return refused.value


# ---------------------------------------------------------------------------------------------------------
# The translation


def test_up_to_three_reply_buttons_are_whatsapp_reply_buttons() -> None:
    out = interactive_object(buttons("Your order?", [("Accept", ""), ("Decline", "")], [("Call me", "")]))
    assert out == {
        "type": "button",
        "body": {"text": "Your order?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "Accept", "title": "Accept"}},
                {"type": "reply", "reply": {"id": "Decline", "title": "Decline"}},
                {"type": "reply", "reply": {"id": "Call me", "title": "Call me"}},
            ]
        },
    }


def test_a_long_button_title_is_shortened_and_its_answer_keeps_the_whole_text() -> None:
    [button] = interactive_object(buttons("Ok?", [("Yes, deliver it tomorrow morning", "")]))["action"]["buttons"]
    assert button["reply"] == {"id": "Yes, deliver it tomorrow morning", "title": "Yes, deliver it tom…"}
    assert len(button["reply"]["title"]) == 20


def test_more_than_three_reply_buttons_become_a_list_and_the_same_answer_twice_is_one_button() -> None:
    out = interactive_object(buttons("Size?", [("S", ""), ("M", ""), ("L", "")], [("XL", ""), ("M", "")]))
    assert out["type"] == "list"
    assert out["action"]["button"] == "Choose"
    assert out["action"]["sections"] == [
        {"rows": [{"id": s, "title": s} for s in ("S", "M", "L", "XL")]},
    ]


def test_a_link_button_alone_is_a_cta_url_and_further_links_are_lines_of_the_body() -> None:
    out = interactive_object(buttons("See it", [("Open the shop website", "https://shop.example/")]))
    assert out == {
        "type": "cta_url",
        "body": {"text": "See it"},
        "action": {
            "name": "cta_url",
            "parameters": {"display_text": "Open the shop websi…", "url": "https://shop.example/"},
        },
    }
    two = interactive_object(buttons("Links", [("Shop", "https://shop.example/"), ("Help", "https://help.example/")]))
    assert two["type"] == "cta_url" and two["action"]["parameters"]["url"] == "https://shop.example/"
    assert two["body"]["text"] == "Links\n\nHelp: https://help.example/"


def test_links_beside_reply_buttons_are_lines_of_the_body() -> None:
    out = interactive_object(buttons("Order?", [("Accept", ""), ("Site", "https://shop.example/x")]))
    assert out["type"] == "button"
    assert out["body"]["text"] == "Order?\n\nSite: https://shop.example/x"
    assert [b["reply"]["id"] for b in out["action"]["buttons"]] == ["Accept"]


def test_a_salesbot_list_keeps_its_header_footer_sections_and_shortens_long_labels() -> None:
    text = listed(
        "When should we come?",
        [
            ("This week", [("tue", "Tuesday", "after 5 pm"), ("wed", "Wednesday, early morning slot", "d" * 80)]),
            ("", [("mon", "Monday", "")]),
        ],
        header="Delivery",
        footer="Times are local",
        button="Pick a delivery day please",
    )
    out = interactive_object(text)
    assert out["header"] == {"type": "text", "text": "Delivery"}
    assert out["footer"] == {"text": "Times are local"}
    assert out["body"] == {"text": "When should we come?"}
    assert out["action"]["button"] == "Pick a delivery day…"
    this_week, untitled = out["action"]["sections"]
    assert this_week["title"] == "This week"
    assert this_week["rows"][0] == {"id": "tue", "title": "Tuesday", "description": "after 5 pm"}
    assert this_week["rows"][1]["title"] == "Wednesday, early mornin…"
    assert this_week["rows"][1]["description"] == "d" * 71 + "…"
    assert untitled == {"title": "2", "rows": [{"id": "mon", "title": "Monday"}]}  # several sections need titles


def test_what_cannot_be_shortened_is_refused_with_a_reason_for_the_manager() -> None:
    eleven = listed(
        "Pick", [("A", [(f"r{i}", f"Row {i}", "") for i in range(6)]), ("B", [(f"s{i}", "x", "") for i in range(5)])]
    )
    assert "at most 10 options" in str(refusal(eleven))
    assert "same value" in str(refusal(listed("Pick", [("A", [("x", "One", ""), ("x", "Two", "")])])))
    assert "id of option" in str(refusal(listed("Pick", [("A", [("x" * 201, "One", "")])])))
    assert "id of button" in str(refusal(buttons("Pick", [("y" * 257, "")])))
    too_long = refusal(buttons("b" * 1025, [("Yes", "")]))
    assert too_long.reason_args["detail"].startswith("a message with buttons or a list holds at most 1024")


# ---------------------------------------------------------------------------------------------------------
# Through the adapter, the emulator, and the client's tap


async def send(world: World, text: content_pb2.Text, reply_to: str = "") -> str:
    content = content_pb2.Content(text=text)
    return await world.adapter.send(world.http, world.graph_url, world.credential, ANN_WA_ID, content, reply_to)


async def tap(world: World, wamid: str, choice: str) -> dict[str, Any]:
    await wait_for(lambda: world.wa.messages[wamid].status == "delivered", timeout=10, what="the message delivered")
    body = {"phone_number_id": world.phone_number_id, "user": ANN_WA_ID, "message_id": wamid, "choice": choice}
    response = await world.http.post(f"{world.wa_url}/_emulator/users/tap", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_reply_buttons_reach_the_client_as_a_reply_and_the_tap_comes_back_with_its_id(world: World) -> None:
    [hola] = [m for m in world.wa.messages.values() if m.direction == "in"]
    wamid = await send(world, buttons("Ship today?", [("Yes, ship it", ""), ("Wait", "")]), reply_to=hola.wamid)
    sent = world.sent()[-1]
    assert sent["type"] == "interactive" and sent["body"]["context"] == {"message_id": hola.wamid}
    assert sent["body"]["interactive"]["type"] == "button"

    tapped = await tap(world, wamid, "Yes, ship it")
    assert tapped["messages"][0]["body"]["context"]["id"] == wamid
    event = world.receiver.events[-1]
    assert (event.content.text.body, event.content.text.callback_data) == ("Yes, ship it", "Yes, ship it")
    assert event.reply_to_platform_message_id == wamid


async def test_a_list_row_tap_comes_back_with_its_callback_data(world: World) -> None:
    text = listed("When?", [("This week", [("tue", "Tuesday", "after 5 pm"), ("wed", "Wednesday", "")])], button="Days")
    wamid = await send(world, text)
    await tap(world, wamid, "tue")
    event = world.receiver.events[-1]
    assert (event.content.text.body, event.content.text.callback_data) == ("Tuesday", "tue")

    refused = await world.http.post(
        f"{world.wa_url}/_emulator/users/tap",
        json={"phone_number_id": world.phone_number_id, "user": ANN_WA_ID, "message_id": wamid, "choice": "fri"},
    )
    assert refused.status_code == 400 and "no option 'fri'" in refused.text


async def test_a_url_button_is_sent_as_cta_url(world: World) -> None:
    await send(world, buttons("Track it", [("Tracking", "https://track.example/42")]))
    interactive = world.sent()[-1]["body"]["interactive"]
    assert interactive["type"] == "cta_url"
    assert interactive["action"]["parameters"] == {"display_text": "Tracking", "url": "https://track.example/42"}


@pytest.mark.parametrize(
    ("interactive", "code", "details"),
    [
        (
            {"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [
                {"type": "reply", "reply": {"id": f"b{i}", "title": f"B{i}"}} for i in range(4)
            ]}},
            131009, "interactive['action']['buttons'] has 4 buttons, at most 3 are allowed",
        ),
        (
            {"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [
                {"type": "reply", "reply": {"id": "a", "title": "t" * 21}}
            ]}},
            131009, "interactive['action']['buttons'][0]['reply']['title'] is 21 characters long, at most 20",
        ),
        (
            {"type": "list", "body": {"text": "Pick"}, "action": {"button": "Go", "sections": [
                {"title": "A", "rows": [{"id": f"r{i}", "title": "x"} for i in range(6)]},
                {"title": "B", "rows": [{"id": f"s{i}", "title": "x"} for i in range(5)]},
            ]}},
            131009, "interactive['action']['sections'] hold 11 rows in total, at most 10",
        ),
        (
            {"type": "list", "body": {"text": "Pick"}, "action": {"button": "Go", "sections": [
                {"rows": [{"id": "r", "title": "x"}]}, {"rows": [{"id": "s", "title": "y"}]},
            ]}},
            100, "interactive['action']['sections'][0]['title'] is required",
        ),
        (
            {"type": "cta_url", "body": {"text": "Go"}, "action": {"name": "cta_url", "parameters": {
                "display_text": "Site", "url": "ftp://x"}}},
            131009, "interactive['action']['parameters']['url'] must be an http(s) URL",
        ),
    ],
)  # fmt: skip
async def test_the_emulator_refuses_what_graph_refuses_naming_the_field(
    world: World, interactive: dict[str, Any], code: int, details: str
) -> None:
    headers = {"Authorization": f"Bearer {world.credential.split(':', 2)[2]}"}
    body = {"messaging_product": "whatsapp", "to": ANN_WA_ID, "type": "interactive", "interactive": interactive}
    response = await world.http.post(f"{world.graph_url}/{world.phone_number_id}/messages", json=body, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert details in error["error_data"]["details"]
