"""The settings window in a real browser: Debian's headless Chromium drives the real gateway, whose
services talk to the Kommo and Telegram emulators. An admin opens the window with Kommo's one-time
token, adds a Telegram bot (a wrong token first: the precise error is shown), tunes how its chats land
in the CRM and sees it on the next message, removes a channel; sees what Telegram says about each bot,
mends a revoked token, pauses and resumes a channel; reads errors in Spanish; without a valid token the
window opens nothing. The first render is measured (not asserted: docs/benchmarks.md records it).

`BRIDGE_SCREENSHOTS=docs/screenshots` makes the tests save every page and state at desktop (1280 px)
and narrow (375 px) widths; run with `-s` to see the first-render figures."""

from __future__ import annotations

import base64
import json
import os
import statistics
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from kommo_bridge.router.v1 import router_pb2
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import create_engine, text

from tests.e2e.sandbox import Sandbox
from tests.e2e.test_crm import pipelines, shared_contact, telegram_user
from tests.e2e.test_settings_access import open_session, widget_token
from tests.e2e.test_settings_api import settings_client
from tests.e2e.whatsapp_side import new_business
from tests.support import wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DESKTOP, NARROW, HEIGHT = 1280, 375, 800
UI = Path(__file__).resolve().parents[2] / "services" / "gateway" / "settings_ui"
BUTTON_WAIT_S = 10


class Window:
    """One browser tab on the settings window, with the few moves the tests need."""

    def __init__(self, driver: WebDriver, screenshots: Path | None) -> None:
        self.driver = driver
        self.screenshots = screenshots
        self.resize(DESKTOP)

    def resize(self, width: int) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": width < 600},
        )

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def until(self, condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda _: condition())
        except TimeoutException:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; page: {self.text()[:2000]}") from None

    def open(self, url: str, state: str = "ready") -> None:
        self.driver.get("about:blank")  # a fresh page load, even when only the fragment differs
        self.driver.get(url)
        self.until(lambda: self.js("return document.documentElement.dataset.state") == state, f"the page {state}")
        if state == "ready":  # what Telegram says about each bot fills in just after the first view
            self.until(lambda: self.js("return performance.getEntriesByName('bridge:health').length"), "the health")

    def find(self, css: str, within: WebElement | None = None) -> WebElement:
        return (within or self.driver).find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str, within: WebElement | None = None) -> list[WebElement]:
        return (within or self.driver).find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "body") -> str:
        for _ in range(3):  # a part of the view may be rebuilt between finding it and reading it
            found = self.find_all(css)
            try:
                return found[0].text if found else ""
            except StaleElementReferenceException:
                continue
        raise AssertionError(f"{css} kept being rebuilt")

    def card(self, name_part: str) -> WebElement:
        for card in self.find_all(".channel"):
            if name_part in self.find(".channel-name", card).text:
                return card
        raise AssertionError(f"no channel card named like {name_part!r}: {self.text('main')}")

    def first_render(self) -> dict[str, float]:
        """Milliseconds from navigation start: the skeleton's first paint, the filled-in view (and the API
        calls it waited for), and the platforms' health filled in after it."""
        self.until(lambda: self.js("return performance.getEntriesByName('bridge:first-view').length"), "the mark")
        self.until(lambda: self.js("return performance.getEntriesByName('bridge:health').length"), "the health")
        timings: dict[str, float] = self.js(
            """
            const paint = performance.getEntriesByName("first-contentful-paint")[0];
            const view = performance.getEntriesByName("bridge:first-view")[0];
            const health = performance.getEntriesByName("bridge:health")[0];
            const api = performance.getEntriesByType("resource")
              .filter((r) => r.name.includes("/settings/api/") && !r.name.includes("/settings/api/health"));
            return {
              first_contentful_paint: paint ? paint.startTime : -1,
              first_view: view ? view.startTime : -1,
              api_calls: api.reduce((sum, r) => sum + r.duration, 0),
              health_shown: health ? health.startTime : -1,
            };
            """
        )
        return timings

    def dialog(self, what: str) -> WebElement:
        """The open dialog, once it shows: while it fades in, WebDriver reads its text as empty."""
        found: WebElement = self.until(
            lambda: next((d for d in self.find_all("dialog[open]") if d.is_displayed() and d.text.strip()), None), what
        )
        return found

    def button(self, label: str, within: WebElement | None = None) -> WebElement:
        """The visible button (or link) whose text is `label`, once it shows: a dialog fades in, and until
        it has, WebDriver counts its buttons as not displayed."""

        def shown() -> WebElement | None:
            for found in self.find_all("button, a.btn", within):
                if found.is_displayed() and found.text.strip() == label:
                    return found
            return None

        found: WebElement = self.until(shown, f"a button {label!r}", timeout=BUTTON_WAIT_S)
        return found

    def shot(self, name: str, *, full_page: bool = True, toasts: bool = False) -> None:
        """docs/screenshots/<name>-desktop.png and -narrow.png, when BRIDGE_SCREENSHOTS asks for them."""
        if self.screenshots is None:
            return
        self.js("document.getElementById('toasts').hidden = arguments[0]", not toasts)
        for label, width in (("desktop", DESKTOP), ("narrow", NARROW)):
            self.resize(width)
            self.js(
                """
                const finite = document.getAnimations().filter((a) => a.effect.getTiming().iterations !== Infinity);
                return Promise.all(finite.map((a) => a.finished.catch(() => null)))
                  .then(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
                """
            )
            height = int(self.js("return Math.max(document.documentElement.scrollHeight, innerHeight)"))
            params: dict[str, Any] = {"format": "png"}
            if full_page:
                params |= {
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
                }
            png = self.driver.execute_cdp_cmd("Page.captureScreenshot", params)["data"]
            (self.screenshots / f"{name}-{label}.png").write_bytes(base64.b64decode(png))
        self.resize(DESKTOP)
        self.js("document.getElementById('toasts').hidden = false")


@pytest.fixture
def window() -> Iterator[Window]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = "needs Debian's chromium and chromium-driver (.ci/run installs them with apt-get)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    screenshots = os.environ.get("BRIDGE_SCREENSHOTS")
    shots = Path(screenshots) if screenshots else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bridge-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            f"--window-size={DESKTOP},{HEIGHT}",
            "--lang=en-US",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            yield Window(driver, shots)
        finally:
            driver.quit()


async def window_url(sandbox: Sandbox, lang: str = "") -> str:
    """What the Kommo widget does: trade a one-time token for the window's address."""
    opened = await open_session(sandbox, await widget_token(sandbox))
    assert opened.status_code == 200, opened.text
    url = str(opened.json()["url"])
    return f"{url}&lang={lang}" if lang else url


async def test_an_admin_adds_a_bot_and_tunes_how_its_chats_land(sandbox: Sandbox, window: Window) -> None:
    # A client has written to the sandbox bot already today.
    await sandbox.client_writes(501, "Hello! Is my order ready?")
    await wait_for(lambda: _has_lead(sandbox), timeout=30, what="the first client's lead")

    # Opening: the ticket leaves the address bar at once. The first render is measured on the very first
    # page of a just-started Chromium, then as an admin's running browser sees it: nothing cached, cached.
    window.open(await window_url(sandbox))
    assert "ticket" not in window.driver.current_url
    print(f"\nsettings window first render (ms), just-started browser: {json.dumps(window.first_render())}")
    window.driver.execute_cdp_cmd("Network.enable", {})
    for cache_disabled in (True, False):
        window.driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": cache_disabled})
        renders = []
        for _ in range(5):
            window.open(await window_url(sandbox))
            renders.append(window.first_render())
        print(f"  {'nothing cached' if cache_disabled else 'cached'}: {json.dumps(renders)}")
        for key in ("first_contentful_paint", "first_view", "api_calls", "health_shown"):
            values = [r[key] for r in renders]
            print(f"    {key}: median {statistics.median(values):.0f}, max {max(values):.0f}")
    assert "Your messenger bridge" in window.text("h1")
    assert window.text("[data-testid=overall]") == "All good", window.text(".status")
    sandbox_card = window.card(sandbox.channel.bot_username)
    assert window.text(".channel .badge") == "Healthy"
    window.shot("status")

    # Keyboard: Tab reaches "Add Telegram bot", Enter opens the dialog on the token field, Escape closes it.
    window.js("document.activeElement.blur()")
    add = window.find(".section-head .btn-primary")
    for _ in range(12):
        window.driver.switch_to.active_element.send_keys(Keys.TAB)
        if window.driver.switch_to.active_element == add:
            break
    assert window.driver.switch_to.active_element == add, "Tab never reached the Add button"
    add.send_keys(Keys.ENTER)
    window.dialog("the add dialog")
    assert window.driver.switch_to.active_element.get_attribute("name") == "token"
    window.driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    window.until(lambda: not window.find_all("dialog"), "the dialog closed")
    assert window.driver.switch_to.active_element == add, "the focus did not return to the Add button"

    # A wrong token (well formed, unknown to Telegram): the precise error, in the dialog.
    add.click()
    token_field = window.find("dialog input[name=token]")
    token_field.send_keys("1234567890:" + "A" * 35)
    window.find("dialog button[type=submit]").click()
    error = window.until(lambda: window.find_all("dialog .form-error:not([hidden])"), "the token error")[0]
    assert "did not accept this token" in error.text, error.text
    assert token_field.get_attribute("aria-invalid") == "true"
    window.shot("add-bot-wrong-token", full_page=False)

    # The right one: the channel appears, healthy, with its settings open.
    created = await sandbox.http.post(
        f"{sandbox.stack.telegram_url}/_emulator/bots",
        json={"username": "support_desk_bot", "first_name": "Support Desk"},
    )
    created.raise_for_status()
    bot = created.json()
    token_field.clear()
    token_field.send_keys(bot["token"])
    window.find("dialog button[type=submit]").click()
    window.until(lambda: not window.find_all("dialog"), "the dialog closed after connecting")
    card = window.card("support_desk_bot")
    assert window.find(".badge", card).text == "Healthy"
    # Telegram's view of the new bot follows the view: its webhook is the bridge's.
    window.until(lambda: "Registered" in window.find(".channel-facts", card).text, "the new bot's webhook shown")
    assert window.find(".disclosure", card).get_attribute("aria-expanded") == "true"
    assert bot["id"] and (await sandbox.http.get(f"{sandbox.stack.telegram_url}/_emulator/bots")).json()["bots"]
    window.shot("channel-added")
    unnamed = window.js(
        """
        return [...document.querySelectorAll("input, select, button, a[href]")]
          .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.textContent.trim())
          .map((el) => el.outerHTML.slice(0, 120));
        """
    )
    assert unnamed == [], f"controls without an accessible name: {unnamed}"

    # Source name, pipeline and contact rule, saved.
    _, other = pipelines(await sandbox.crm())
    source = window.find("input[name=source_name]", card)
    source.clear()
    source.send_keys("Support desk (Telegram)")
    Select(window.find("select[name=pipeline_id]", card)).select_by_visible_text(other["name"])
    window.find("input[value=link_existing]", card).click()
    save = window.find("button[type=submit]", card)
    assert save.is_enabled()
    save.click()
    window.until(lambda: window.find_all(".form-status.is-ok", card), "the saved confirmation")
    assert "Applies from the next message" in window.find(".form-status", card).text
    window.shot("channel-settings-saved")

    # ... and it takes effect on the next message: the source is renamed and moved, and a client
    # sharing a phone Kommo knows is linked to that contact instead of a new one.
    known = await sandbox.seed_contact("Dana Known", phone="+1 (555) 010-7788")
    sent = await sandbox.http.post(
        f"{sandbox.stack.telegram_url}/_emulator/clients/messages",
        json={"bot_id": bot["id"], "user": telegram_user(4401, "Dana"), "message": shared_contact(4401, "15550107788")},
    )
    sent.raise_for_status()

    await wait_for(lambda: _has_lead(sandbox, 2), timeout=30, what="the lead of the new bot's first client")
    crm = await sandbox.crm()
    (renamed,) = [s for s in crm["sources"] if s["external_id"] == f"telegram-{bot['id']}"]
    assert (renamed["name"], renamed["pipeline_id"]) == ("Support desk (Telegram)", other["id"])
    (lead,) = [lead for lead in crm["leads"] if lead["source_id"] == renamed["id"]]
    assert lead["contact_id"] == known and lead["pipeline_id"] == other["id"]
    assert len(crm["contacts"]) == 2, "a duplicate contact was created"  # the first client's, and Dana's
    window.find(".topbar-slot button").click()
    window.until(
        lambda: "None yet" not in window.find(".channel-facts", window.card("support_desk_bot")).text,
        "the new bot's last message shown",
    )

    # Remove the first channel, through an accessible confirmation (no window.confirm).
    window.find(".btn-danger-ghost", sandbox_card).click()
    dialog = window.dialog("the remove confirmation")
    assert dialog.get_attribute("role") == "alertdialog"
    # (textContent: the dialog may still be fading in, and WebDriver's .text skips what is not yet visible)
    focused = window.js("return document.activeElement.textContent")
    assert focused == "Keep it", f"the safe choice must have the focus, not {focused!r}"
    window.shot("remove-channel", full_page=False)
    window.find("button.btn-danger", dialog).click()
    window.until(lambda: not window.find_all("dialog"), "the confirmation closed")
    window.until(lambda: len(window.find_all(".channel")) == 1, "the removed channel gone from the list")
    assert "1 removed channel" in window.text(".removed summary")
    assert (await sandbox.connection()).state == router_pb2.CONNECTION_STATE_DISCONNECTED


async def test_without_a_valid_kommo_token_the_window_opens_nothing(
    sandbox: Sandbox, window: Window, database_url: str
) -> None:
    base = sandbox.stack.public_url
    page = await sandbox.http.get(f"{base}/settings/")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'self' https://*.kommo.com https://*.amocrm.com https://*.amocrm.ru" in policy
    assert "<script>" not in page.text and " style=" not in page.text
    script = next(p for p in page.text.split('"') if p.startswith("static/app.js?v="))
    static = await sandbox.http.get(f"{base}/settings/{script}")
    assert static.status_code == 200 and "immutable" in static.headers["cache-control"]
    assert (await sandbox.http.get(f"{base}/settings/api/overview")).status_code == 401

    # No ticket at all (the address opened outside Kommo): a friendly way back to Kommo.
    window.open(f"{base}/settings/", state="signed-out")
    assert window.text("h1") == "Open the settings from Kommo"
    window.shot("open-from-kommo")

    # A forged Kommo token opens no session; a made-up ticket is refused by the page, with the reason.
    genuine = jwt.decode(await widget_token(sandbox), options={"verify_signature": False})
    forged = jwt.encode({**genuine, "jti": "forged"}, "f" * 64, algorithm="HS256")
    assert (await open_session(sandbox, forged)).status_code == 403
    window.open(f"{base}/settings/#ticket=made-up", state="signed-out")
    assert window.text("h1") == "This link can't be used again"
    assert "already used or has expired" in window.text(".gate .detail")
    window.shot("link-refused")
    assert "ticket" not in window.driver.current_url
    async with httpx.AsyncClient(base_url=base, cookies={"bridge_settings": "forged"}) as stranger:
        assert (await stranger.get("/settings/api/overview")).status_code == 403

    # The Kommo user's language: Spanish and Portuguese, whole.
    window.open(await window_url(sandbox, "es"))
    assert window.js("return document.documentElement.lang") == "es"
    assert window.text("h1") == "Tu puente de mensajería"
    window.shot("status-es")
    window.open(await window_url(sandbox, "pt"))
    assert window.text("h1") == "Sua ponte de mensagens"

    # Access to Kommo lost: the status says so and offers the way back, first thing on the page.
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE installations SET state = 'needs_reauth', last_error = :e WHERE account_id = :a"),
            {"e": "Kommo refused the refresh token", "a": sandbox.channel.account_id},
        )
    engine.dispose()
    window.open(await window_url(sandbox))
    assert window.text("[data-testid=overall]") == "Action needed"
    cta = window.find(".issue.is-error a.btn")
    assert cta.text.strip() == "Re-authorise" and urlsplit(cta.get_attribute("href") or "").scheme.startswith("http")
    window.shot("needs-reauth")


async def test_an_admin_mends_a_revoked_token_and_pauses_a_channel(shared_sandbox: Sandbox, window: Window) -> None:
    sandbox = shared_sandbox
    # A second bot, whose owner then revokes its token in BotFather; Telegram failed to reach the first.
    page = await settings_client(sandbox)
    bot = await sandbox.new_bot("window_desk_bot")
    added = await page.post("/settings/api/channels", json={"platform": "telegram", "token": bot["token"]})
    assert added.status_code == 201, added.text
    await page.aclose()
    new_token = await sandbox.botfather_revokes(bot["id"])
    await sandbox.telegram_webhook_failed(sandbox.channel.bot_id, "Wrong response from the webhook: 502 Bad Gateway")

    # The status says what needs the admin, first thing, with the way to mend it.
    window.open(await window_url(sandbox))
    desk = window.card("window_desk_bot")
    window.until(lambda: window.find(".badge", desk).text == "Token rejected", "the rejected token shown")
    assert window.text("[data-testid=overall]") == "Action needed"
    tiles = window.text(".tiles").lower()  # labels are shown in capitals
    assert "errors waiting\n2\n2 things to fix below" in tiles, tiles
    issues = window.text(".issues")
    assert "Telegram refuses the bot token" in issues
    assert "could not deliver to the bridge" in issues and "502 Bad Gateway" in issues
    shop = window.card(sandbox.channel.bot_username)
    assert window.find(".badge", shop).text == "Delivery errors"
    window.shot("channel-health")

    # Fix bot token: another bot's token is refused with the reason; the bot's new one mends it.
    window.button("Fix bot token", window.find(".issues")).click()
    dialog = window.dialog("the token dialog")
    assert "New token for" in window.find(".modal-title", dialog).text
    field = window.find("input[name=token]", dialog)
    other = await sandbox.new_bot("someone_elses_bot")
    field.send_keys(other["token"])
    window.find("button[type=submit]", dialog).click()
    error = window.until(lambda: window.find_all("dialog .form-error:not([hidden])"), "the other-bot error")[0]
    assert "belongs to another bot" in error.text and "Window_Desk_Bot" in error.text, error.text
    window.shot("fix-token-other-bot", full_page=False)
    field.clear()
    field.send_keys(new_token)
    window.find("button[type=submit]", dialog).click()
    window.until(lambda: not window.find_all("dialog"), "the token dialog closed")
    window.until(lambda: window.find(".badge", window.card("window_desk_bot")).text == "Healthy", "the mended bot")
    assert "Telegram refuses the bot token" not in window.text(".status")
    written = await sandbox.client_writes_to(bot["id"], 6301, "window-after-fix")
    assert written["status"] == 200, written

    # Pause: an explanation first (the safe choice focused), then the channel holds its clients' messages.
    shop = window.card(sandbox.channel.bot_username)
    window.find(".pause-toggle", shop).click()
    dialog = window.dialog("the pause confirmation")
    assert window.js("return document.activeElement.textContent") == "Keep running"
    assert "Nothing is lost" in (dialog.get_attribute("textContent") or "")
    window.shot("pause-channel", full_page=False)
    window.button("Pause channel", dialog).click()
    window.until(lambda: not window.find_all("dialog"), "the pause confirmation closed")
    window.until(lambda: window.find(".badge", window.card(sandbox.channel.bot_username)).text == "Paused", "paused")
    assert (await sandbox.client_writes(6302, "window-held"))["status"] == 200
    window.find(".topbar-slot button").click()
    shop = window.card(sandbox.channel.bot_username)
    window.until(lambda: "1 client message waits" in window.text(".channel-paused"), "the held message counted")
    assert "is paused" in window.text(".issues")
    window.shot("channel-paused")
    window.find(".pause-toggle", shop).click()
    window.until(lambda: window.find(".pause-toggle", shop).text == "Pause", "resumed")
    await wait_for(lambda: _in_kommo(sandbox, "window-held"), timeout=30, what="the held message in Kommo")
    assert window.find(".badge", shop).text != "Paused"

    # In Spanish, errors too: the code's text, not the API's English sentence.
    window.open(await window_url(sandbox, "es"))
    window.find(".section-head .btn-primary").click()
    field = window.until(lambda: window.find_all("dialog input[name=token]"), "the add dialog")[0]
    field.send_keys("1234567890:" + "A" * 35)
    window.find("dialog button[type=submit]").click()
    error = window.until(lambda: window.find_all("dialog .form-error:not([hidden])"), "the token error")[0]
    assert error.text.strip() == "Telegram no aceptó este token. Cópialo de nuevo, completo, desde BotFather."
    window.shot("add-bot-wrong-token-es", full_page=False)


async def test_an_admin_connects_a_whatsapp_number(shared_sandbox: Sandbox, window: Window) -> None:
    business = await new_business(shared_sandbox, "Window Shop WA", "15550002222")
    window.open(await window_url(shared_sandbox))
    window.button("Add WhatsApp number").click()
    dialog = window.dialog("the WhatsApp dialog")
    assert window.find(".modal-title", dialog).text == "Connect a WhatsApp number"
    values = {
        "phone_number_id": business.phone_number_id,
        "waba_id": business.waba_id,
        "token": "EAAG-not-the-token",
        "app_secret": business.app_secret,
    }
    for name, value in values.items():
        window.find(f"input[name={name}]", dialog).send_keys(value)
    window.find("button[type=submit]", dialog).click()
    error = window.until(lambda: window.find_all("dialog .form-error:not([hidden])"), "the token error")[0]
    assert "WhatsApp did not accept this access token" in error.text, error.text
    window.shot("add-whatsapp-wrong-token", full_page=False)
    token = window.find("input[name=token]", dialog)
    token.clear()
    token.send_keys(business.access_token)
    window.find("button[type=submit]", dialog).click()
    window.until(lambda: not window.find_all("dialog"), "the WhatsApp dialog closed")
    card = window.until(lambda: window.card("Window Shop WA"), "the WhatsApp number's card")
    assert window.find(".channel-sub", card).text.startswith("WhatsApp")


async def test_an_admin_mends_a_whatsapp_numbers_revoked_access_token(shared_sandbox: Sandbox, window: Window) -> None:
    sandbox = shared_sandbox
    business = await new_business(sandbox, "Window Fix WA", "15550004444")
    page = await settings_client(sandbox)
    form = {
        "platform": "whatsapp",
        "phone_number_id": business.phone_number_id,
        "waba_id": business.waba_id,
        "token": business.access_token,
        "app_secret": business.app_secret,
    }
    added = await page.post("/settings/api/channels", json=form)
    assert added.status_code == 201, added.text
    await page.aclose()
    control = f"{sandbox.stack.whatsapp_url}/_emulator"
    revoked = await sandbox.http.post(f"{control}/tokens/revoke", json={"access_token": business.access_token})
    assert revoked.status_code == 200, revoked.text

    window.open(await window_url(sandbox))
    card = window.until(lambda: window.card("Window Fix WA"), "the WhatsApp number's card")
    window.until(lambda: window.find(".badge", card).text == "Token rejected", "the rejected token shown")
    assert "WhatsApp refuses the access token" in window.text(".issues")
    window.button("Fix access token", window.find(".issues")).click()
    dialog = window.dialog("the WhatsApp token dialog")
    assert window.find(".modal-title", dialog).text.startswith("New access token for Window Fix WA")
    assert window.find("input[name=app_secret]", dialog).get_attribute("required") is None  # optional

    # Another business's token cannot reach this number: refused with the reason, nothing changed.
    other = await new_business(sandbox, "Window Other WA", "15550004999")
    field = window.find("input[name=token]", dialog)
    field.send_keys(other.access_token)
    window.find("button[type=submit]", dialog).click()
    error = window.until(lambda: window.find_all("dialog .form-error:not([hidden])"), "the other-account error")[0]
    assert "cannot reach this number" in error.text, error.text
    window.shot("fix-whatsapp-token-other-account", full_page=False)

    issued = await sandbox.http.post(f"{control}/tokens", json={"waba_ids": [business.waba_id]})
    assert issued.status_code == 201, issued.text
    field.clear()
    field.send_keys(issued.json()["access_token"])
    window.find("button[type=submit]", dialog).click()
    window.until(lambda: not window.find_all("dialog"), "the WhatsApp token dialog closed")
    window.until(lambda: window.find(".badge", window.card("Window Fix WA")).text == "Healthy", "the mended number")
    assert "WhatsApp refuses the access token" not in window.text(".status")


async def _in_kommo(sandbox: Sandbox, text: str) -> bool:
    return any(m["message"].get("text") == text for m in await sandbox.kommo_messages())


async def _has_lead(sandbox: Sandbox, count: int = 1) -> bool:
    return len((await sandbox.crm())["leads"]) >= count


def test_the_three_languages_have_the_same_messages() -> None:
    keys = {lang: set(json.loads((UI / "i18n" / f"{lang}.json").read_text())) for lang in ("en", "es", "pt")}
    assert keys["es"] == keys["en"] and keys["pt"] == keys["en"]
    values = {lang: json.loads((UI / "i18n" / f"{lang}.json").read_text()) for lang in ("es", "pt")}
    for lang, messages in values.items():
        assert all(value.strip() for value in messages.values()), f"{lang} has empty messages"
