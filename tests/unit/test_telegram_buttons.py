"""A manager's buttons and lists as a Telegram inline keyboard, and the client's tap coming back as a
`callback_query` answered in the webhook's answer (reference/messenger-apis.md §1, "Buttons"), against the
Telegram emulator, which checks keyboards and taps as the Bot API does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from kommo_bridge.events.v1 import content_pb2, events_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.messengers.registry import webhook_answer
from libs.messengers.telegram.adapter import TelegramAdapter, TelegramBotClient
from libs.messengers.telegram.buttons import inline_keyboard, keyboard_text
from libs.messengers.telegram.emulator import TelegramEmulator, TelegramState, create_telegram_emulator
from libs.messengers.telegram.emulator_state import Bot
from tests.support import wait_for
from tests.unit.telegram_support import api, assert_error

BASE = "http://telegram.test"
HOOK = "http://bridge.test/hook"
ANA: dict[str, Any] = {"id": 555001, "is_bot": False, "first_name": "Ana", "username": "ana_s"}
LONG_VALUE = "Please hold my order until I am back from my holiday early next month"  # over 64 bytes


def buttons(body: str, *rows: list[tuple[str, str]]) -> content_pb2.Content:
    """A text with rows of buttons `(text, url)`; a reply button answers with its text, as Kommo's do."""
    return content_pb2.Content(
        text=content_pb2.Text(
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
    )


SLOTS = content_pb2.Text(
    body="When should we come?",
    choices=content_pb2.Choices(
        list=content_pb2.ChoiceList(
            header="Delivery",
            footer="Times are local",
            button="Pick a day",
            sections=[
                content_pb2.ChoiceSection(
                    title="This week",
                    rows=[
                        content_pb2.ChoiceRow(callback_data="tue", title="Tuesday", description="after 5 pm"),
                        content_pb2.ChoiceRow(callback_data="wed", title="Wednesday"),
                    ],
                )
            ],
        )
    ),
)


@dataclass
class Bridge:
    """The gateway's part: verify, parse with the adapter, answer with what the adapter gives."""

    secret: str = "hook-secret"
    events: list[events_pb2.InboundMessage] = field(default_factory=list)

    def app(self) -> Starlette:
        adapter = TelegramAdapter()

        async def hook(request: Request) -> Response:
            body = await request.body()
            adapter.verify_webhook(request.headers, body, self.secret)
            events = adapter.parse_webhook(body, "conn")
            self.events.extend(events)
            return JSONResponse(webhook_answer(adapter, events) or {"ok": True})

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@pytest.fixture
async def bridge() -> Bridge:
    return Bridge()


@pytest.fixture
async def emulator(bridge: Bridge) -> AsyncIterator[TelegramEmulator]:
    to_bridge = httpx.AsyncClient(transport=httpx.ASGITransport(app=bridge.app()))
    emu = create_telegram_emulator(TelegramState(http=to_bridge, retry_initial_s=0.05, retry_max_s=0.2))
    yield emu
    await emu.state.aclose()
    await to_bridge.aclose()


@pytest.fixture
async def bot(emulator: TelegramEmulator, http: httpx.AsyncClient, bridge: Bridge) -> Bot:
    bot = emulator.state.create_bot("acme_support_bot", "Acme Support")
    await TelegramBotClient(BASE, bot.token, http).set_webhook(
        HOOK, bridge.secret, allowed_updates=["message", "callback_query"]
    )
    await emulator.state.client_message(bot.id, ANA, text="hi")
    return bot


async def tap(http: httpx.AsyncClient, bot: Bot, message_id: int, data: str) -> httpx.Response:
    body = {"bot_id": bot.id, "user_id": ANA["id"], "message_id": message_id, "data": data}
    return await http.post("/_emulator/clients/callback_queries", json=body)


# ---------------------------------------------------------------------------------------------------------
# The keyboard


def test_rows_of_buttons_keep_their_layout_links_open_their_address() -> None:
    content = buttons("Order?", [("Accept", ""), ("Site", "https://shop.example/")], [("Call me", "")])
    assert inline_keyboard(content.text.choices) == {
        "inline_keyboard": [
            [{"text": "Accept", "callback_data": "Accept"}, {"text": "Site", "url": "https://shop.example/"}],
            [{"text": "Call me", "callback_data": "Call me"}],
        ]
    }


def test_a_list_is_a_button_per_row_with_its_header_and_footer_around_the_text() -> None:
    assert keyboard_text(SLOTS) == "Delivery\n\nWhen should we come?\n\nTimes are local"
    assert inline_keyboard(SLOTS.choices) == {
        "inline_keyboard": [
            [{"text": "Tuesday – after 5 pm", "callback_data": "tue"}],
            [{"text": "Wednesday", "callback_data": "wed"}],
        ]
    }


def test_a_value_over_64_bytes_goes_as_a_digest() -> None:
    [[button]] = inline_keyboard(buttons("?", [(LONG_VALUE, "")]).text.choices)["inline_keyboard"]
    assert button["callback_data"].startswith("#") and len(button["callback_data"].encode()) <= 64


# ---------------------------------------------------------------------------------------------------------
# Against the emulator


async def test_the_client_taps_a_button_the_bridge_gets_its_text_and_value_and_the_spinner_stops(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot, bridge: Bridge
) -> None:
    adapter = TelegramAdapter()
    content = buttons("Ship today?", [("Yes", ""), ("Wait", "")], [("Track", "https://track.example/1")])
    message_id = int(await adapter.send(http, BASE, bot.token, str(ANA["id"]), content))
    sent = emulator.state.sent[-1].message
    assert sent["text"] == "Ship today?" and sent["reply_markup"] == inline_keyboard(content.text.choices)

    tapped = await tap(http, bot, message_id, "Wait")
    assert tapped.status_code == 200, tapped.text
    await wait_for(lambda: len(bridge.events) == 2, timeout=10, what="the tap at the bridge")
    event = bridge.events[-1]
    assert (event.content.text.body, event.content.text.callback_data) == ("Wait", "Wait")
    assert (event.chat_id, event.sender_id, event.reply_to_platform_message_id) == ("555001", "555001", str(message_id))
    [query] = emulator.state.callback_queries.values()
    assert (query.answered, query.answered_by) == (True, "webhook_reply")

    refused = await tap(http, bot, message_id, "Maybe")
    assert refused.status_code == 400 and "no callback button 'Maybe'" in refused.text


async def test_a_list_row_and_a_long_value_come_back_recognisably(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot, bridge: Bridge
) -> None:
    adapter = TelegramAdapter()
    listed = await adapter.send(http, BASE, bot.token, str(ANA["id"]), content_pb2.Content(text=SLOTS))
    await tap(http, bot, int(listed), "tue")
    long_one = await adapter.send(http, BASE, bot.token, str(ANA["id"]), buttons("Hold?", [(LONG_VALUE, "")]))
    digest = emulator.state.sent[-1].message["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    await tap(http, bot, int(long_one), digest)
    await wait_for(lambda: len(bridge.events) == 3, timeout=10, what="both taps at the bridge")
    row, held = (e.content.text for e in bridge.events[1:])
    assert (row.body, row.callback_data) == ("Tuesday – after 5 pm", "tue")
    assert (held.body, held.callback_data) == (LONG_VALUE, LONG_VALUE)  # Kommo's value is the button's text


async def test_the_emulator_checks_keyboards_and_answers_as_the_bot_api_does(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    chat = ANA["id"]
    too_long = {"inline_keyboard": [[{"text": "x", "callback_data": "y" * 65}]]}
    assert_error(
        await api(http, bot, "sendMessage", chat_id=chat, text="t", reply_markup=too_long),
        400,
        "Bad Request: BUTTON_DATA_INVALID",
    )
    bare = {"inline_keyboard": [[{"text": "x"}]]}
    assert_error(
        await api(http, bot, "sendMessage", chat_id=chat, text="t", reply_markup=bare),
        400,
        "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
    )
    bad_url = {"inline_keyboard": [[{"text": "x", "url": "javascript:alert(1)"}]]}
    assert_error(
        await api(http, bot, "sendMessage", chat_id=chat, text="t", reply_markup=bad_url),
        400,
        "Bad Request: BUTTON_URL_INVALID",
    )
    # A form-encoded call carries the keyboard as JSON text.
    keyboard = json.dumps({"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}]]})
    sent = await http.post(
        f"/bot{bot.token}/sendMessage", data={"chat_id": str(chat), "text": "ok?", "reply_markup": keyboard}
    )
    assert sent.json()["result"]["reply_markup"] == json.loads(keyboard)

    answered = await api(http, bot, "answerCallbackQuery", callback_query_id="12345")
    assert_error(answered, 400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
