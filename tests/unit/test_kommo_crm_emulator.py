"""The Kommo CRM that chats reach, through both emulators sharing one `CrmState`: a signed amojo message
makes the contact and the incoming lead (§4, §11), and the account emulator's REST v4 serves and
validates pipelines, sources, contacts, chat links and unsorted leads in Kommo's shapes, under the per-IP
rate limit."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from libs.kommo.emulator import AmojoState, CrmState, CrmValidationError, User, create_amojo_emulator
from libs.kommo.emulator.accounts import AccountsState, create_account_emulator
from libs.kommo.signing import signed_headers
from tests.support import ManualClock as Clock

SECRET = "f2d7f8704eff95087ed45b23ba99c0b5aac8278e"
CHANNEL_ID = "344a5002-f8ca-454d-af3d-396180102ac7"
CHANNEL_CODE = "amo.ext.bridge"
AMOJO_ID = "52e591f7-c98f-4255-8495-827210138c81"
SCOPE_ID = f"{CHANNEL_ID}_{AMOJO_ID}"
DOMAIN = "shop.kommo.com"
ACCOUNT_ID = 30_123_456
CLIENT_ID = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
CLIENT_SECRET = "Zt7Qm2Wx9Lp4Rv6Ns1Kd8Hb3Jf5Gc0Ya7Ue2Io4Pl9Mk6Nj1Bh3Vg8Cf5Dx0Sz"
REDIRECT_URI = "http://bridge.test/kommo/oauth"
AMOJO = "http://amojo.test"
KOMMO = "http://kommo.test"
PREFIX = "/v2/origin/custom"
API = f"/accounts/{DOMAIN}/api/v4"
TITLE = "Kommo Bridge"


@dataclass
class Kommo:
    crm: CrmState
    amojo: AmojoState
    accounts: AccountsState
    amojo_http: httpx.AsyncClient
    http: httpx.AsyncClient
    clock: Clock
    token: str
    accounts_app: Starlette

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def amojo_post(self, path: str, data: dict[str, Any]) -> httpx.Response:
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        headers = signed_headers(SECRET, "POST", path, body)
        return await self.amojo_http.post(AMOJO + path, content=body, headers=headers)

    async def send(
        self,
        conversation_id: str = "conv-1",
        text: str = "Hello",
        *,
        msgid: str = "",
        silent: bool | None = None,
        source: str | None = None,
        receiver: dict[str, Any] | None = None,
        sender: dict[str, Any] | None = None,
    ) -> str:
        """A new_message through the signed amojo API; returns Kommo's chat id."""
        payload: dict[str, Any] = {
            "timestamp": 1_700_000_000,
            "msec_timestamp": 1_700_000_000_000,
            "msgid": msgid or f"{conversation_id}-{text}",
            "conversation_id": conversation_id,
            "sender": sender or client(conversation_id),
            "message": {"type": "text", "text": text},
        }
        if silent is not None:
            payload["silent"] = silent
        if source is not None:
            payload["source"] = {"external_id": source}
        if receiver is not None:
            payload["receiver"] = receiver
        answer = await self.amojo_post(f"{PREFIX}/{SCOPE_ID}", {"event_type": "new_message", "payload": payload})
        assert answer.status_code == 200, answer.text
        chat_id: str = answer.json()["new_message"]["conversation_id"]
        return chat_id

    async def create_chat(self, conversation_id: str) -> str:
        answer = await self.amojo_post(
            f"{PREFIX}/{SCOPE_ID}/chats", {"conversation_id": conversation_id, "user": client(conversation_id)}
        )
        assert answer.status_code == 200, answer.text
        chat_id: str = answer.json()["id"]
        return chat_id

    async def api(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        """An authorized REST call. The clock moves 0.2 s first, so a test's calls stay under 7 per second."""
        self.clock.advance(0.2)
        content = None if body is None else json.dumps(body).encode()
        headers = {**self.auth, "Content-Type": "application/json"}
        return await self.http.request(method, API + path, content=content, headers=headers, params=params)

    def pipeline_ids(self) -> tuple[int, int]:
        main, second = self.crm.pipelines(AMOJO_ID)
        return main.id, second.id


def client(conversation_id: str = "conv-1") -> dict[str, Any]:
    return {
        "id": f"tg-{conversation_id}",
        "name": "Vasya Client",
        "avatar": "https://cdn.test/a.png",
        "profile": {"phone": "+1 (555) 010-2030", "email": "Vasya@Example.com"},
        "profile_link": "https://t.me/vasya",
    }


@pytest.fixture
async def kommo() -> AsyncIterator[Kommo]:
    clock = Clock(datetime(2025, 1, 1, 12, 0, tzinfo=UTC))
    crm = CrmState(clock=clock)
    amojo_app, amojo = create_amojo_emulator(crm=crm)
    accounts_app, accounts = create_account_emulator(AccountsState(clock=clock, crm=crm))
    assert amojo.crm is crm and accounts.crm is crm
    amojo.register_channel(CHANNEL_ID, SECRET, "http://bridge.test/hooks/:scope_id", code=CHANNEL_CODE)
    accounts.register_integration(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI)
    accounts.create_account(DOMAIN, AMOJO_ID, ACCOUNT_ID, "Shop")
    code = accounts.issue_code(DOMAIN)
    grant = accounts.exchange_code(DOMAIN, CLIENT_ID, CLIENT_SECRET, code, REDIRECT_URI)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=amojo_app)) as amojo_http,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=accounts_app), base_url=KOMMO) as http,
    ):
        kommo = Kommo(crm, amojo, accounts, amojo_http, http, clock, grant.access_token, accounts_app)
        connected = await kommo.amojo_post(
            f"{PREFIX}/{CHANNEL_ID}/connect", {"account_id": AMOJO_ID, "title": TITLE, "hook_api_version": "v2"}
        )
        assert connected.status_code == 200, connected.text
        yield kommo


def hal(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/hal+json"
    data: dict[str, Any] = response.json()
    return data


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    data: dict[str, Any] = response.json()
    assert data["status"] == status and data["type"] == f"https://httpstatus.es/{status}"
    assert isinstance(data["title"], str) and isinstance(data["detail"], str)
    return data


def validation_errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The §11 400 body, exactly; returns its `validation-errors`."""
    data = problem(response, 400)
    assert set(data) == {"validation-errors", "title", "type", "status", "detail"}
    assert (data["title"], data["detail"]) == ("Bad Request", "Request validation failed")
    errors: list[dict[str, Any]] = data["validation-errors"]
    for item in errors:
        assert set(item) == {"request_id", "errors"} and isinstance(item["request_id"], str)
        for error in item["errors"]:
            assert set(error) == {"code", "path", "detail"}
            assert all(isinstance(v, str) for v in error.values())
    return errors


def error_paths(response: httpx.Response) -> list[tuple[str, str, str]]:
    """(request_id, path, code) of every validation error."""
    return [(i["request_id"], e["path"], e["code"]) for i in validation_errors(response) for e in i["errors"]]


def source_body(external_id: str, **fields: Any) -> dict[str, Any]:
    return {"name": f"Source {external_id}", "external_id": external_id, **fields}


# -- pipelines


async def test_pipelines_are_seeded_with_a_main_one_and_incoming_stages(kommo: Kommo) -> None:
    data = hal(await kommo.api("GET", "/leads/pipelines"))

    assert data["_total_items"] == 2
    pipelines = data["_embedded"]["pipelines"]
    assert [p["is_main"] for p in pipelines] == [True, False]
    assert len({p["id"] for p in pipelines}) == 2 and all(isinstance(p["id"], int) for p in pipelines)
    for pipeline in pipelines:
        assert pipeline["is_unsorted_on"] is True and pipeline["account_id"] == ACCOUNT_ID
        assert {"id", "name", "sort", "is_main", "_embedded", "_links"} <= set(pipeline)
        statuses = pipeline["_embedded"]["statuses"]
        (incoming,) = [s for s in statuses if s["type"] == 1]
        assert incoming["name"] == "Incoming leads" and incoming["pipeline_id"] == pipeline["id"]
        assert all({"id", "name", "pipeline_id", "type"} <= set(s) for s in statuses)
    in_process = kommo.crm.pipelines(AMOJO_ID)
    assert [p.id for p in in_process] == [p["id"] for p in pipelines]
    assert in_process[1].incoming_status_id != in_process[0].incoming_status_id


async def test_an_untouched_account_is_seeded_on_first_touch() -> None:
    crm = CrmState()
    first = crm.pipelines("amojo-a")
    again = crm.pipelines("amojo-a")
    other = crm.pipelines("amojo-b")

    assert [p.id for p in first] == [p.id for p in again]
    assert {p.id for p in first}.isdisjoint(p.id for p in other)
    assert crm.main_pipeline("amojo-a") is first[0] and first[0].is_main and not first[1].is_main


# -- a chat's first incoming message


async def test_first_message_makes_one_contact_and_one_lead_in_the_sources_pipeline(kommo: Kommo) -> None:
    _, second = kommo.pipeline_ids()
    hal(await kommo.api("POST", "/sources", [source_body("tg-bot-1", pipeline_id=second, name="Telegram bot")]))

    chat_id = await kommo.send("conv-1", "I want a sofa", source="tg-bot-1")

    (contact,) = kommo.crm.contacts(AMOJO_ID)
    assert contact.name == "Vasya Client"
    assert contact.values("PHONE") == ["+1 (555) 010-2030"] and contact.values("EMAIL") == ["Vasya@Example.com"]
    (lead,) = kommo.crm.leads(AMOJO_ID)
    (pipeline,) = [p for p in kommo.crm.pipelines(AMOJO_ID) if p.id == second]
    assert (lead.chat_id, lead.contact_id, lead.category) == (chat_id, contact.id, "chats")
    assert (lead.pipeline_id, lead.status_id) == (second, pipeline.incoming_status_id)
    received_at = int(kommo.clock.now.timestamp())
    assert lead.metadata == {
        "from": "Vasya Client",
        "received_at": received_at,
        "service": CHANNEL_CODE,
        "client": {"name": "Vasya Client", "avatar": "https://cdn.test/a.png"},
        "origin": {"chat_id": chat_id},
        "last_message_text": "I want a sofa",
        "source_name": "Telegram bot",
    }
    (link,) = kommo.crm.links(AMOJO_ID)
    assert (link.chat_id, link.contact_id) == (chat_id, contact.id)

    unsorted = hal(await kommo.api("GET", "/leads/unsorted", **{"filter[category][]": "chats"}))
    (item,) = unsorted["_embedded"]["unsorted"]
    assert item["uid"] == lead.uid and item["category"] == "chats" and item["pipeline_id"] == second
    assert item["source_name"] == "Telegram bot" and item["account_id"] == ACCOUNT_ID
    assert item["metadata"] == lead.metadata and item["created_at"] == received_at
    assert item["_embedded"]["contacts"] == [{"id": contact.id}]
    assert item["_embedded"]["leads"] == [{"id": lead.lead_id}]
    links = hal(await kommo.api("GET", "/contacts/chats", **{"chat_id[]": chat_id}))
    assert links == {
        "_total_items": 1,
        "_embedded": {"chats": [{"chat_id": chat_id, "contact_id": contact.id, "id": link.id}]},
    }
    found = hal(await kommo.api("GET", f"/contacts/{contact.id}"))
    assert found["name"] == "Vasya Client" and found["account_id"] == ACCOUNT_ID


async def test_silent_messages_make_no_contact_and_no_lead(kommo: Kommo) -> None:
    chat_id = await kommo.send("conv-1", "old 1", silent=True)
    await kommo.send("conv-1", "old 2", silent=True)

    assert kommo.crm.contacts(AMOJO_ID) == [] and kommo.crm.leads(AMOJO_ID) == []
    assert kommo.crm.chats(AMOJO_ID) == [chat_id]
    assert (await kommo.api("GET", "/leads/unsorted")).status_code == 204
    assert (await kommo.api("GET", "/contacts")).status_code == 204

    await kommo.send("conv-1", "newest", silent=False)  # §4 import: the newest one is not silent

    (lead,) = kommo.crm.leads(AMOJO_ID)
    assert lead.chat_id == chat_id and lead.metadata["last_message_text"] == "newest"
    assert len(kommo.crm.contacts(AMOJO_ID)) == 1


async def test_a_chat_gets_one_lead_and_one_contact_ever(kommo: Kommo) -> None:
    first_chat = await kommo.send("conv-1", "one")
    await kommo.send("conv-1", "two")
    await kommo.send("conv-1", "three", source="tg-bot-1")

    assert len(kommo.crm.contacts(AMOJO_ID)) == 1 and len(kommo.crm.leads(AMOJO_ID)) == 1
    assert kommo.crm.leads(AMOJO_ID)[0].metadata["last_message_text"] == "one"

    second_chat = await kommo.send("conv-2", "another client")

    assert second_chat != first_chat
    assert [lead.chat_id for lead in kommo.crm.leads(AMOJO_ID)] == [first_chat, second_chat]
    assert len(kommo.crm.contacts(AMOJO_ID)) == 2 and len(kommo.crm.links(AMOJO_ID)) == 2


async def test_a_chat_linked_to_a_contact_gets_its_lead_on_that_contact(kommo: Kommo) -> None:
    chat_id = await kommo.create_chat("conv-1")
    seeded = await kommo.http.post(
        f"/_emulator/accounts/{DOMAIN}/contacts", json={"name": "Known Customer", "phone": "+79151112233"}
    )
    assert seeded.status_code == 201
    contact_id = seeded.json()["contact"]["id"]
    linked = hal(await kommo.api("POST", "/contacts/chats", [{"contact_id": contact_id, "chat_id": chat_id}]))
    assert linked["_embedded"]["chats"][0]["request_id"] == "0"
    assert kommo.crm.leads(AMOJO_ID) == []  # §3: creating a chat makes no lead

    await kommo.send("conv-1", "hi again")

    (contact,) = kommo.crm.contacts(AMOJO_ID)
    (lead,) = kommo.crm.leads(AMOJO_ID)
    assert contact.id == contact_id == lead.contact_id and contact.name == "Known Customer"
    assert [(x.chat_id, x.contact_id) for x in kommo.crm.links(AMOJO_ID)] == [(chat_id, contact_id)]


async def test_an_unknown_or_missing_source_falls_back_to_the_main_pipeline(kommo: Kommo) -> None:
    main, second = kommo.pipeline_ids()
    hal(await kommo.api("POST", "/sources", [source_body("tg-bot-1", pipeline_id=second)]))

    await kommo.send("conv-1", "hi", source="nobody-knows-me")
    await kommo.send("conv-2", "hi")

    first, without = kommo.crm.leads(AMOJO_ID)
    assert first.pipeline_id == without.pipeline_id == main
    assert first.source_id == 0 and first.source_name == TITLE and first.metadata["source_name"] == TITLE
    main_pipeline = kommo.crm.main_pipeline(AMOJO_ID)
    assert first.status_id == main_pipeline.incoming_status_id


async def test_a_chat_created_with_a_source_keeps_it_for_its_lead(kommo: Kommo) -> None:
    _, second = kommo.pipeline_ids()
    hal(await kommo.api("POST", "/sources", [source_body("tg-bot-2", pipeline_id=second)]))
    answer = await kommo.amojo_post(
        f"{PREFIX}/{SCOPE_ID}/chats",
        {"conversation_id": "conv-9", "user": client("conv-9"), "source": {"external_id": "tg-bot-2"}},
    )
    assert answer.status_code == 200

    await kommo.send("conv-9", "hello")

    (lead,) = kommo.crm.leads(AMOJO_ID)
    assert lead.pipeline_id == second and lead.source_uid == "tg-bot-2"


async def test_an_imported_reply_makes_no_lead(kommo: Kommo) -> None:
    manager = {"id": "mgr-1", "ref_id": kommo.amojo.manager.id, "name": "Manager"}
    await kommo.send("conv-1", "we answered elsewhere", sender=manager, receiver=client("conv-1"))

    assert kommo.crm.leads(AMOJO_ID) == [] and kommo.crm.contacts(AMOJO_ID) == []
    assert len(kommo.crm.chats(AMOJO_ID)) == 1


async def test_crm_in_process() -> None:
    crm = CrmState()
    person = User(id="u-1", client_id="tg-1", name="Ann", phone="15550102030", email="ann@x.test")
    crm.register_chat("amojo-1", "chat-1")
    crm.register_chat("amojo-1", "chat-2")
    known = crm.add_contact("amojo-1", "Ann Known", phone="+1 555 010 2030")
    crm.link_chats("amojo-1", [{"contact_id": known.id, "chat_id": "chat-2"}])

    assert crm.chat_message("amojo-1", "chat-1", person, "", silent=True, text="x") is None
    lead = crm.chat_message("amojo-1", "chat-1", person, "", silent=False, text="hi", service="amo.ext.x")
    again = crm.chat_message("amojo-1", "chat-1", person, "", silent=False, text="hi again")
    linked = crm.chat_message("amojo-1", "chat-2", person, "", silent=False, text="yo")

    assert lead is not None and again is None and linked is not None
    assert linked.contact_id == known.id and lead.contact_id != known.id
    assert lead.pipeline_id == crm.main_pipeline("amojo-1").id and lead.source_uid == "amo.ext.x"
    assert crm.lead_for_chat("amojo-1", "chat-1") is lead
    assert [c.name for c in crm.contacts("amojo-1")] == ["Ann Known", "Ann"]
    assert crm.contacts("amojo-2") == [] and crm.leads("amojo-2") == []
    assert [c.id for c in crm.find_contacts("amojo-1", "15550102030")] == [known.id, lead.contact_id]
    with pytest.raises(CrmValidationError) as refused:
        crm.link_chats("amojo-1", [{"contact_id": known.id, "chat_id": "chat-1"}])
    assert refused.value.to_json()["validation-errors"][0]["errors"][0]["code"] == "NotUnique"


async def test_emulators_refuse_a_state_with_another_crm() -> None:
    with pytest.raises(ValueError, match="CrmState"):
        create_amojo_emulator(AmojoState(), crm=CrmState())
    with pytest.raises(ValueError, match="CrmState"):
        create_account_emulator(AccountsState(), crm=CrmState())
    shared = CrmState()
    _, amojo = create_amojo_emulator(AmojoState(crm=shared), crm=shared)
    assert amojo.crm is shared


# -- sources


async def test_source_create_answers_full_models_with_request_ids(kommo: Kommo) -> None:
    main, second = kommo.pipeline_ids()
    page = {"id": "1", "name": "p", "link": "https://wa.me/15550001111"}
    services = [{"type": "whatsapp", "params": {"waba": True}, "pages": [page]}]
    data = hal(
        await kommo.api(
            "POST",
            "/sources",
            [
                {**source_body("ext-1"), "request_id": "mine", "origin_code": CHANNEL_CODE, "services": services},
                source_body("ext-2", pipeline_id=second, default=True),
            ],
        )
    )

    assert data["_total_items"] == 2
    first, other = data["_embedded"]["sources"]
    assert {k: v for k, v in first.items() if k not in ("id", "_links")} == {
        "name": "Source ext-1",
        "pipeline_id": main,
        "external_id": "ext-1",
        "default": False,
        "origin_code": CHANNEL_CODE,
        "services": services,
        "account_id": ACCOUNT_ID,
        "request_id": "mine",
    }
    assert isinstance(first["id"], int) and first["_links"]["self"]["href"].endswith(f"/api/v4/sources/{first['id']}")
    assert (other["request_id"], other["pipeline_id"], other["default"]) == ("1", second, True)

    listed = hal(await kommo.api("GET", "/sources"))
    assert [s["external_id"] for s in listed["_embedded"]["sources"]] == ["ext-1", "ext-2"]
    assert "request_id" not in listed["_embedded"]["sources"][0]
    filtered = hal(await kommo.api("GET", "/sources", **{"filter[external_id]": "ext-2"}))
    assert [s["id"] for s in filtered["_embedded"]["sources"]] == [other["id"]]
    assert (await kommo.api("GET", "/sources", **{"filter[external_id]": "nope"})).status_code == 204
    one = hal(await kommo.api("GET", f"/sources/{first['id']}"))
    assert one["external_id"] == "ext-1" and one["id"] == first["id"]


async def test_sources_list_is_204_when_empty(kommo: Kommo) -> None:
    response = await kommo.api("GET", "/sources")
    assert response.status_code == 204 and response.content == b""


async def test_source_create_validation_errors(kommo: Kommo) -> None:
    hal(await kommo.api("POST", "/sources", [source_body("taken")]))

    duplicate = await kommo.api("POST", "/sources", [source_body("taken")])
    assert validation_errors(duplicate) == [
        {
            "request_id": "0",
            "errors": [
                {
                    "code": "NotUnique",
                    "path": "external_id",
                    "detail": "A source with this external_id already exists.",
                }
            ],
        }
    ]
    in_batch = await kommo.api("POST", "/sources", [source_body("twin"), source_body("twin")])
    assert error_paths(in_batch) == [("1", "external_id", "NotUnique")]
    bad = await kommo.api(
        "POST",
        "/sources",
        [
            {"external_id": "no-name"},
            {"name": "", "external_id": "blank-name"},
            {"name": "x"},
            source_body("x" * 37),
            source_body("кириллица"),
            source_body("pipe", pipeline_id=1),
            source_body("typed", default="yes", services="none"),
            "not an object",
        ],
    )
    assert error_paths(bad) == [
        ("0", "name", "FieldMissing"),
        ("1", "name", "NotBlank"),
        ("2", "external_id", "FieldMissing"),
        ("3", "external_id", "InvalidLength"),
        ("4", "external_id", "InvalidLength"),
        ("5", "pipeline_id", "NotSupportedChoice"),
        ("6", "default", "InvalidType"),
        ("6", "services", "InvalidType"),
        ("7", "", "InvalidType"),
    ]
    exactly_36 = hal(await kommo.api("POST", "/sources", [source_body("y" * 36)]))
    assert exactly_36["_embedded"]["sources"][0]["external_id"] == "y" * 36
    assert len(kommo.crm.sources(AMOJO_ID)) == 2  # refused batches created nothing
    not_array = await kommo.api("POST", "/sources", source_body("object"))
    assert error_paths(not_array) == [("0", "", "InvalidType")]


async def test_source_services_are_validated_as_kommo_models_them_and_kept(kommo: Kommo) -> None:
    whatsapp = {
        "type": "whatsapp",
        "params": {"waba": True, "is_supports_list_message": True},
        "pages": [{"id": "106540352242922", "name": "Shop (15550001111)", "link": "https://wa.me/15550001111"}],
    }
    bad = await kommo.api(
        "POST",
        "/sources",
        [
            source_body("no-type", services=[{"params": {"waba": True}}]),
            source_body("viber", services=[{"type": "viber"}]),
            source_body("flags", services=[{"type": "whatsapp", "params": {"waba": "yes", "lists": True}}]),
            source_body(
                "pages",
                services=[{"type": "whatsapp", "pages": [{"id": 1, "name": " "}, {"name": "n", "link": "wa.me/1"}, 7]}],
            ),
            source_body("ok", services=[whatsapp]),
        ],
    )
    assert error_paths(bad) == [
        ("0", "services.0.type", "FieldMissing"),
        ("1", "services.0.type", "NotSupportedChoice"),
        ("2", "services.0.params.waba", "InvalidType"),
        ("2", "services.0.params.lists", "NotSupportedChoice"),
        ("3", "services.0.pages.0.id", "InvalidType"),
        ("3", "services.0.pages.0.name", "NotBlank"),
        ("3", "services.0.pages.1.id", "FieldMissing"),
        ("3", "services.0.pages.1.link", "InvalidType"),
        ("3", "services.0.pages.2", "InvalidType"),
    ]
    assert kommo.crm.sources(AMOJO_ID) == []  # one bad item refuses the whole batch

    created = hal(await kommo.api("POST", "/sources", [source_body("plain"), source_body("wa", services=[whatsapp])]))
    plain, wa = created["_embedded"]["sources"]
    assert (plain["services"], wa["services"]) == ([], [whatsapp])
    refused = await kommo.api("PATCH", f"/sources/{plain['id']}", {"services": [{"type": "whatsapp", "params": []}]})
    assert error_paths(refused) == [("0", "services.0.params", "InvalidType")]
    patched = hal(await kommo.api("PATCH", f"/sources/{plain['id']}", {"services": [whatsapp]}))
    assert patched["services"] == [whatsapp] and patched["name"] == "Source plain"
    kept = kommo.crm.source(AMOJO_ID, plain["id"])
    assert kept is not None and kept.services == [whatsapp]


async def test_a_template_review_names_only_a_source_declaring_waba(kommo: Kommo) -> None:
    control = f"/_emulator/accounts/{DOMAIN}/user/chat_templates"
    fields = {"name": "Ready", "content": "Your order is ready", "type": "waba", "waba_category": "UTILITY"}
    created = await kommo.http.post(control, json={**fields, "waba_language": "en_US"})
    assert created.status_code == 201, created.text
    review = f"{control}/{created.json()['chat_template']['id']}/review"
    waba = {"type": "whatsapp", "params": {"waba": True}, "pages": []}
    made = hal(await kommo.api("POST", "/sources", [source_body("bot"), source_body("number", services=[waba])]))
    bot, number = (s["id"] for s in made["_embedded"]["sources"])

    async def refused(source_id: int) -> list[tuple[str, str]]:
        """The control API (a user's action in Kommo) answers with Kommo's validation body as plain JSON."""
        answer = await kommo.http.post(review, json={"source_id": source_id})
        assert answer.status_code == 400, answer.text
        return [(e["path"], e["code"]) for i in answer.json()["validation-errors"] for e in i["errors"]]

    assert await refused(bot) == [("source_id", "NotSupportedChoice")]
    assert await refused(999_999) == [("source_id", "EntityNotFound")]
    accepted = await kommo.http.post(review, json={"source_id": number})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["review"]["source_id"] == number


async def test_source_limits_per_call_and_per_account(kommo: Kommo) -> None:
    too_many = await kommo.api("POST", "/sources", [source_body(f"s-{i}") for i in range(51)])
    assert error_paths(too_many) == [("0", "", "LimitExceeded")]

    hal(await kommo.api("POST", "/sources", [source_body(f"s-{i}") for i in range(50)]))
    over = await kommo.api("POST", "/sources", [source_body("s-50")])

    assert error_paths(over) == [("0", "", "LimitExceeded")]
    assert len(kommo.crm.sources(AMOJO_ID)) == 50


async def test_source_patch_and_external_id_is_immutable(kommo: Kommo) -> None:
    _, second = kommo.pipeline_ids()
    created = hal(await kommo.api("POST", "/sources", [source_body("a", default=True), source_body("b")]))
    a, b = (s["id"] for s in created["_embedded"]["sources"])

    batch = hal(
        await kommo.api(
            "PATCH", "/sources", [{"id": a, "name": "Renamed", "external_id": "a"}, {"id": b, "default": True}]
        )
    )
    single = hal(await kommo.api("PATCH", f"/sources/{a}", {"pipeline_id": second}))

    assert [s["name"] for s in batch["_embedded"]["sources"]] == ["Renamed", "Source b"]
    assert single["pipeline_id"] == second and single["name"] == "Renamed" and single["id"] == a
    by_id = {s.id: s for s in kommo.crm.sources(AMOJO_ID)}
    assert (by_id[a].default, by_id[b].default) == (False, True)  # one default

    changed = await kommo.api("PATCH", f"/sources/{a}", {"external_id": "other"})
    assert validation_errors(changed) == [
        {
            "request_id": "0",
            "errors": [{"code": "NotEditable", "path": "external_id", "detail": "external_id cannot be changed."}],
        }
    ]
    unknown = await kommo.api("PATCH", "/sources", [{"id": 999_999, "name": "x"}, {"name": "no id"}])
    assert error_paths(unknown) == [("0", "id", "EntityNotFound"), ("1", "id", "FieldMissing")]
    problem(await kommo.api("PATCH", "/sources/999999", {"name": "x"}), 404)
    kept = kommo.crm.source(AMOJO_ID, a)
    assert kept is not None and kept.external_id == "a"


async def test_source_delete_is_204_then_404(kommo: Kommo) -> None:
    created = hal(await kommo.api("POST", "/sources", [source_body("gone"), source_body("batch")]))
    gone, batch = (s["id"] for s in created["_embedded"]["sources"])

    deleted = await kommo.api("DELETE", f"/sources/{gone}")
    again = await kommo.api("DELETE", f"/sources/{gone}")

    assert deleted.status_code == 204 and deleted.content == b""
    assert problem(again, 404)["title"] == "Not Found"
    problem(await kommo.api("GET", f"/sources/{gone}"), 404)
    assert error_paths(await kommo.api("DELETE", "/sources", [{"id": gone}])) == [("0", "id", "EntityNotFound")]
    assert (await kommo.api("DELETE", "/sources", [{"id": batch}])).status_code == 204
    assert kommo.crm.sources(AMOJO_ID) == []


# -- contacts


async def test_contacts_create_get_and_search(kommo: Kommo) -> None:
    created = hal(
        await kommo.api(
            "POST",
            "/contacts",
            [
                {
                    "first_name": "Maria",
                    "last_name": "Lopez",
                    "custom_fields_values": [
                        {"field_code": "PHONE", "values": [{"value": "+1 (555) 010-2030", "enum_code": "MOB"}]},
                        {"field_code": "EMAIL", "values": [{"value": "Maria@Shop.test"}]},
                    ],
                },
                {"name": "Pedro", "request_id": "p"},
            ],
        )
    )
    (maria, pedro) = created["_embedded"]["contacts"]
    assert set(maria) == {"id", "request_id", "_links"} and (maria["request_id"], pedro["request_id"]) == ("0", "p")

    model = hal(await kommo.api("GET", f"/contacts/{maria['id']}"))
    assert {k: model[k] for k in ("id", "name", "first_name", "last_name", "account_id")} == {
        "id": maria["id"],
        "name": "Maria Lopez",
        "first_name": "Maria",
        "last_name": "Lopez",
        "account_id": ACCOUNT_ID,
    }
    assert isinstance(model["created_at"], int) and isinstance(model["updated_at"], int)
    assert isinstance(model["responsible_user_id"], int)
    assert model["_links"]["self"]["href"].endswith(f"/api/v4/contacts/{maria['id']}")
    assert model["custom_fields_values"] == [
        {
            "field_id": 264_911,
            "field_name": "Phone",
            "field_code": "PHONE",
            "field_type": "multitext",
            "values": [{"value": "+1 (555) 010-2030", "enum_code": "MOB"}],
        },
        {
            "field_id": 264_913,
            "field_name": "Email",
            "field_code": "EMAIL",
            "field_type": "multitext",
            "values": [{"value": "Maria@Shop.test", "enum_code": "WORK"}],
        },
    ]
    pedro_model = hal(await kommo.api("GET", f"/contacts/{pedro['id']}"))
    assert pedro_model["custom_fields_values"] is None

    async def search(query: str) -> list[int]:
        response = await kommo.api("GET", "/contacts", query=query)
        if response.status_code == 204:
            return []
        return [c["id"] for c in hal(response)["_embedded"]["contacts"]]

    assert await search("15550102030") == [maria["id"]]
    assert await search("+1 555 010 2030") == [maria["id"]]
    assert await search("maria@shop.TEST") == [maria["id"]]
    assert await search("lope") == [maria["id"]]
    assert await search("pedro") == [pedro["id"]]
    assert await search("nobody") == []
    assert await search("") == [maria["id"], pedro["id"]]
    limited = hal(await kommo.api("GET", "/contacts", limit=1))
    assert len(limited["_embedded"]["contacts"]) == 1 and "next" in limited["_links"]
    assert (await kommo.api("GET", "/contacts/999999")).status_code == 204


async def test_contact_phone_search_matches_digits_both_ways(kommo: Kommo) -> None:
    plain = kommo.crm.add_contact(AMOJO_ID, "Plain", phone="15550102030")

    found = hal(await kommo.api("GET", "/contacts", query="+1 (555) 010-2030"))

    assert [c["id"] for c in found["_embedded"]["contacts"]] == [plain.id]


async def test_contact_patch_replaces_the_listed_fields_only(kommo: Kommo) -> None:
    contact = kommo.crm.add_contact(AMOJO_ID, "Old Name", phone="+100", email="old@x.test")
    before = contact.updated_at
    kommo.clock.advance(5)

    answer = hal(
        await kommo.api(
            "PATCH",
            f"/contacts/{contact.id}",
            {"name": "New Name", "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+200"}]}]},
        )
    )

    assert answer["id"] == contact.id and answer["name"] == "New Name" and answer["updated_at"] > before
    stored = kommo.crm.contact(AMOJO_ID, contact.id)
    assert stored is not None
    assert stored.name == "New Name" and stored.values("PHONE") == ["+200"] and stored.values("EMAIL") == ["old@x.test"]
    hal(
        await kommo.api(
            "PATCH", f"/contacts/{contact.id}", {"custom_fields_values": [{"field_code": "EMAIL", "values": []}]}
        )
    )
    assert stored.values("EMAIL") == [] and stored.values("PHONE") == ["+200"]
    problem(await kommo.api("PATCH", "/contacts/999999", {"name": "x"}), 404)


async def test_contact_validation_errors(kommo: Kommo) -> None:
    response = await kommo.api(
        "POST",
        "/contacts",
        [
            {"custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+1"}]}]},
            {"name": "Bad field", "custom_fields_values": [{"field_code": "ADDRESS", "values": [{"value": "x"}]}]},
            {"name": "Bad id", "custom_fields_values": [{"field_id": 1, "values": [{"value": "x"}]}]},
            {
                "name": "Bad enum",
                "custom_fields_values": [{"field_code": "EMAIL", "values": [{"value": "a@b", "enum_code": "MOB"}]}],
            },
            {"name": 5},
        ],
    )

    assert error_paths(response) == [
        ("0", "name", "FieldMissing"),
        ("1", "custom_fields_values.0.field_code", "NotSupportedChoice"),
        ("2", "custom_fields_values.0.field_id", "NotSupportedChoice"),
        ("3", "custom_fields_values.0.values.0.enum_code", "NotSupportedChoice"),
        ("4", "name", "InvalidType"),
    ]
    assert kommo.crm.contacts(AMOJO_ID) == []
    patch = await kommo.api("PATCH", f"/contacts/{kommo.crm.add_contact(AMOJO_ID, 'A').id}", {"name": ["x"]})
    assert error_paths(patch) == [("0", "name", "InvalidType")]


# -- chat ↔ contact links


async def test_chat_links_validation(kommo: Kommo) -> None:
    chat_id = await kommo.create_chat("conv-1")
    first = kommo.crm.add_contact(AMOJO_ID, "First")
    second = kommo.crm.add_contact(AMOJO_ID, "Second")
    linked = hal(
        await kommo.api("POST", "/contacts/chats", [{"contact_id": first.id, "chat_id": chat_id, "request_id": "r1"}])
    )
    (link,) = linked["_embedded"]["chats"]
    assert linked["_total_items"] == 1
    assert link == {"chat_id": chat_id, "contact_id": first.id, "id": link["id"], "request_id": "r1"}

    refused = await kommo.api(
        "POST",
        "/contacts/chats",
        [
            {"contact_id": 999_999, "chat_id": chat_id},
            {"contact_id": first.id, "chat_id": "6cbab3d5-0000-0000-0000-000000000000"},
            {"contact_id": second.id, "chat_id": chat_id},
            {"chat_id": chat_id},
            {"contact_id": "1", "chat_id": chat_id},
        ],
    )
    assert error_paths(refused) == [
        ("0", "contact_id", "EntityNotFound"),
        ("1", "chat_id", "EntityNotFound"),
        ("2", "chat_id", "NotUnique"),
        ("3", "contact_id", "FieldMissing"),
        ("4", "contact_id", "InvalidType"),
    ]
    same = hal(await kommo.api("POST", "/contacts/chats", [{"contact_id": first.id, "chat_id": chat_id}]))
    assert same["_embedded"]["chats"] == [
        {"chat_id": chat_id, "contact_id": first.id, "id": link["id"], "request_id": "0"}
    ]
    assert len(kommo.crm.links(AMOJO_ID)) == 1


async def test_chat_links_of_another_account_are_refused(kommo: Kommo) -> None:
    kommo.crm.register_chat("other-amojo-id", "foreign-chat")
    contact = kommo.crm.add_contact(AMOJO_ID, "Mine")

    refused = await kommo.api("POST", "/contacts/chats", [{"contact_id": contact.id, "chat_id": "foreign-chat"}])

    assert error_paths(refused) == [("0", "chat_id", "EntityNotFound")]


async def test_chat_links_get_filters_and_204(kommo: Kommo) -> None:
    assert (await kommo.api("GET", "/contacts/chats", **{"chat_id[]": "nope"})).status_code == 204
    one = await kommo.send("conv-1", "a")
    two = await kommo.send("conv-2", "b")
    contact_two = kommo.crm.lead_for_chat(AMOJO_ID, two)
    assert contact_two is not None

    by_contact = hal(await kommo.api("GET", "/contacts/chats", **{"contact_id[]": str(contact_two.contact_id)}))
    both = hal(
        await kommo.http.get(
            f"{API}/contacts/chats", params=[("chat_id[]", one), ("chat_id[]", two)], headers=kommo.auth
        )
    )

    assert [c["chat_id"] for c in by_contact["_embedded"]["chats"]] == [two]
    assert both["_total_items"] == 2
    assert error_paths(await kommo.api("GET", "/contacts/chats", **{"contact_id[]": "x"})) == [
        ("0", "contact_id", "InvalidType")
    ]


# -- unsorted


async def test_unsorted_filters_pages_and_limits(kommo: Kommo) -> None:
    main, second = kommo.pipeline_ids()
    hal(await kommo.api("POST", "/sources", [source_body("to-second", pipeline_id=second)]))
    await kommo.send("conv-1", "a")
    await kommo.send("conv-2", "b", source="to-second")
    await kommo.send("conv-3", "c")

    in_second = hal(await kommo.api("GET", "/leads/unsorted", **{"filter[pipeline_id]": second}))
    in_main = hal(await kommo.api("GET", "/leads/unsorted", **{"filter[pipeline_id]": main, "limit": 1, "page": 2}))

    assert [u["metadata"]["last_message_text"] for u in in_second["_embedded"]["unsorted"]] == ["b"]
    assert [u["metadata"]["last_message_text"] for u in in_main["_embedded"]["unsorted"]] == ["c"]
    assert (await kommo.api("GET", "/leads/unsorted", **{"filter[category][]": "forms"})).status_code == 204
    assert (await kommo.api("GET", "/leads/unsorted", page=3)).status_code == 204
    assert error_paths(await kommo.api("GET", "/leads/unsorted", limit=251)) == [("0", "limit", "LimitExceeded")]
    assert error_paths(await kommo.api("GET", "/leads/unsorted", **{"filter[category][]": "pigeons"})) == [
        ("0", "filter.category", "NotSupportedChoice")
    ]


# -- authentication


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/leads/pipelines"),
        ("GET", "/sources"),
        ("POST", "/sources"),
        ("GET", "/contacts"),
        ("GET", "/contacts/chats"),
        ("POST", "/contacts/chats"),
        ("GET", "/leads/unsorted"),
    ],
)
async def test_crm_routes_need_a_valid_bearer_token(kommo: Kommo, method: str, path: str) -> None:
    missing = await kommo.http.request(method, API + path, json=[])
    kommo.clock.advance(1)
    wrong = await kommo.http.request(method, API + path, json=[], headers={"Authorization": "Bearer nope"})

    assert problem(missing, 401)["detail"] == "Authorization required"
    problem(wrong, 401)
    assert kommo.crm.sources(AMOJO_ID) == [] and kommo.crm.links(AMOJO_ID) == []


async def test_crm_routes_answer_402_when_unpaid_and_401_after_revoke(kommo: Kommo) -> None:
    kommo.accounts.set_paid(DOMAIN, False)
    problem(await kommo.api("GET", "/leads/pipelines"), 402)
    kommo.accounts.set_paid(DOMAIN, True)
    kommo.accounts.revoke(DOMAIN)
    problem(await kommo.api("GET", "/leads/pipelines"), 401)


# -- the REST rate limit


async def test_eighth_call_within_a_second_is_429_then_recovers(kommo: Kommo) -> None:
    url, auth = f"{API}/leads/pipelines", kommo.auth
    served = [await kommo.http.get(url, headers=auth) for _ in range(7)]
    kommo.clock.advance(0.5)
    limited = [await kommo.http.get(url, headers=auth) for _ in range(7)]
    token_call = await kommo.http.post(f"/accounts/{DOMAIN}/oauth2/access_token", json={})  # not counted
    kommo.clock.advance(0.499)
    still = await kommo.http.get(url, headers=auth)
    kommo.clock.advance(0.001)
    recovered = await kommo.http.get(url, headers=auth)

    assert [r.status_code for r in served] == [200] * 7
    body = problem(limited[0], 429)
    assert set(body) == {"title", "type", "status", "detail", "retry_after"}
    assert (body["title"], body["retry_after"]) == ("Too Many Requests", 1)
    assert [r.status_code for r in limited] == [429] * 7
    assert token_call.status_code == 400
    assert still.status_code == 429
    assert recovered.status_code == 200  # the refused calls were not counted: the window holds served ones
    statuses = [(e.path.rsplit("/", 1)[-1], e.status) for e in kommo.accounts.log.entries("/api/v4/")]
    assert statuses == [("pipelines", 200)] * 7 + [("pipelines", 429)] * 8 + [("pipelines", 200)]
    entries = kommo.accounts.log.entries("/api/v4/")
    assert all(a.at <= b.at for a, b in itertools.pairwise(entries))


async def test_the_limit_is_per_ip_and_covers_every_api_v4_path(kommo: Kommo) -> None:
    for path in (
        "/leads/pipelines",
        "/account",
        "/sources",
        "/contacts",
        "/leads/unsorted",
        "/nothing-here",
        "/contacts/chats",
    ):
        response = await kommo.http.get(API + path, headers=kommo.auth)
        assert response.status_code in (200, 204, 404), response.text
    limited = await kommo.http.get(API + "/sources", headers=kommo.auth)
    transport = httpx.ASGITransport(app=kommo.accounts_app, client=("10.0.0.2", 4242))
    async with httpx.AsyncClient(transport=transport, base_url=KOMMO) as elsewhere:
        other_ip = await elsewhere.get(API + "/leads/pipelines", headers=kommo.auth)

    problem(limited, 429)
    assert other_ip.status_code == 200


async def test_repeated_violations_ban_the_ip_with_403(kommo: Kommo) -> None:
    knobs = await kommo.http.put(
        "/_emulator/rest-limits", json={"rest_ban_after": 3, "rest_ban_s": 60, "rest_retry_after_s": 2}
    )
    assert knobs.status_code == 200
    assert {k: v for k, v in knobs.json().items() if k != "banned"} == {
        "rest_rate_limit": 7,
        "rest_retry_after_s": 2,
        "rest_ban_after": 3,
        "rest_ban_s": 60,
        "rest_limit_enabled": True,
    }
    url = f"{API}/leads/pipelines"
    for _ in range(7):
        assert (await kommo.http.get(url, headers=kommo.auth)).status_code == 200
    refusals = [await kommo.http.get(url, headers=kommo.auth) for _ in range(3)]
    banned = await kommo.http.get(url, headers=kommo.auth)
    kommo.clock.advance(5)
    still_banned = await kommo.http.get(url, headers=kommo.auth)
    token_banned = await kommo.http.post(f"/accounts/{DOMAIN}/oauth2/access_token", json={})

    assert [problem(r, 429)["retry_after"] for r in refusals] == [2, 2, 2]
    assert problem(banned, 403)["title"] == "Forbidden"
    problem(still_banned, 403)
    problem(token_banned, 403)
    limits = (await kommo.http.get("/_emulator/rest-limits")).json()
    assert list(limits["banned"]) == ["127.0.0.1"]

    kommo.clock.advance(55)
    assert (await kommo.http.get(url, headers=kommo.auth)).status_code == 200


async def test_rest_limit_knobs_in_process_and_over_http(kommo: Kommo) -> None:
    kommo.accounts.rest_rate_limit = 2
    url = f"{API}/leads/pipelines"
    assert [(await kommo.http.get(url, headers=kommo.auth)).status_code for _ in range(3)] == [200, 200, 429]

    off = await kommo.http.put("/_emulator/rest-limits", json={"rest_limit_enabled": False})
    assert off.json()["rest_limit_enabled"] is False
    assert [(await kommo.http.get(url, headers=kommo.auth)).status_code for _ in range(10)] == [200] * 10

    bad = await kommo.http.put("/_emulator/rest-limits", json={"rest_rate_limit": 0})
    unknown = await kommo.http.put("/_emulator/rest-limits", json={"burst": 3})
    assert bad.status_code == 400 and unknown.status_code == 400
    assert kommo.accounts.rest_rate_limit == 2


# -- control routes


async def test_control_crm_snapshot_and_contact_seeding(kommo: Kommo) -> None:
    await kommo.send("conv-1", "hello")
    seeded = await kommo.http.post(
        f"/_emulator/accounts/{DOMAIN}/contacts", json={"name": "Seeded", "email": "s@x.test"}
    )
    snapshot = await kommo.http.get(f"/_emulator/accounts/{DOMAIN}/crm")

    assert seeded.status_code == 201
    contact = seeded.json()["contact"]
    assert contact["name"] == "Seeded" and contact["custom_fields_values"][0]["values"] == [
        {"value": "s@x.test", "enum_code": "WORK"}
    ]
    data = snapshot.json()
    assert set(data) == {"pipelines", "sources", "contacts", "leads", "links"}
    assert len(data["pipelines"]) == 2 and data["sources"] == []
    assert [c["name"] for c in data["contacts"]] == ["Vasya Client", "Seeded"]
    bare = await kommo.http.post(f"/_emulator/accounts/{DOMAIN}/contacts", json={"name": "No fields"})
    assert bare.json()["contact"]["custom_fields_values"] == []  # a list here; REST answers null (Kommo's)
    (lead,) = data["leads"]
    assert lead["contact_id"] == data["contacts"][0]["id"] == data["links"][0]["contact_id"]
    nameless = await kommo.http.post(f"/_emulator/accounts/{DOMAIN}/contacts", json={"phone": "+1"})
    assert nameless.status_code == 400
    nowhere = await kommo.http.get("/_emulator/accounts/nobody.kommo.com/crm")
    assert nowhere.status_code == 404
