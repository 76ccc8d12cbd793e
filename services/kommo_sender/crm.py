"""The CRM side of a chat: the channel's Kommo source, and the contact a new client's chat belongs to.

Kommo creates the contact and the incoming lead by itself on a new conversation's first message. The
bridge does the rest before that message goes: the source must exist (or the lead lands in the wrong
pipeline), and with the rule "link to an existing contact" the chat is created empty and linked to
the contact found by phone or e-mail, so Kommo attaches the lead to it instead of making a duplicate.
Commands of one conversation are handled one at a time (one partition), so this runs once per chat.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import content_pb2, events_pb2
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import Delivery
from libs.db.schema import kommo_chats, kommo_sources
from libs.errors import BadRequestError, CredentialRejectedError, NotFoundError, PermanentError, RetryableError
from libs.kommo.client import AmojoClient
from libs.kommo.payloads import Participant
from libs.kommo.rest import AccountAccess, Contact, KommoRestClient
from libs.rpc import call
from libs.runtime import TtlCache

log = logging.getLogger(__name__)

TOKEN_TTL_S = 30.0
KNOWN_CHATS_CACHED = 100_000
T = TypeVar("T")
CONTACT_PENDING_RETRY_S = 5.0
CHAT_WAIT_ATTEMPTS = 60


def participant_for(sender_id: str, profile: content_pb2.Profile) -> Participant:
    return Participant(
        id=sender_id,
        name=profile.name or profile.username or profile.phone or "Client",
        avatar=profile.avatar_url,
        profile_link=profile.profile_link,
        phone=profile.phone,
        email=profile.email,
    )


def account_of(scope_id: str) -> str:
    """A scope id is `{channel_id}_{amojo account id}` (§2)."""
    return scope_id.split("_", 1)[1] if "_" in scope_id else scope_id


class AccountTokens:
    """An account's REST address and access token, from the auth service (which refreshes them)."""

    def __init__(self, auth: auth_pb2_grpc.AuthServiceAsyncStub) -> None:
        self._auth = auth
        self._cache: TtlCache[str, AccountAccess] = TtlCache(TOKEN_TTL_S, self._load)

    async def _load(self, scope_id: str) -> AccountAccess:
        token = await call(self._auth.GetAccessToken, auth_pb2.GetAccessTokenRequest(account_id=account_of(scope_id)))
        return AccountAccess(domain=token.domain, access_token=token.access_token)

    async def get(self, scope_id: str) -> AccountAccess:
        return await self._cache.get(scope_id)

    def forget(self, scope_id: str) -> None:
        self._cache.invalidate(scope_id)

    async def using(self, scope_id: str, work: Callable[[AccountAccess], Awaitable[T]]) -> T:
        """Run REST `work` with the account's token; a refused token is fetched afresh once (an admin
        may have just installed again, or auth refreshed it) before the refusal counts."""
        try:
            return await work(await self.get(scope_id))
        except CredentialRejectedError:
            self.forget(scope_id)
            return await work(await self.get(scope_id))


def kommo_services(spec: events_pb2.SourceSpec) -> list[dict[str, Any]]:
    """The source's `services` in Kommo's shape (§11); a page without a link has no `link`."""
    return [
        {
            "type": service.type,
            "params": dict(service.params),
            "pages": [
                {"id": page.id, "name": page.name, **({"link": page.link} if page.link else {})}
                for page in service.pages
            ],
        }
        for service in spec.services
    ]


def services_key(services: Sequence[dict[str, Any]]) -> str:
    """Canonical JSON of `services`, to compare what is wanted with what was given; "" for none."""
    return json.dumps(list(services), sort_keys=True, separators=(",", ":")) if services else ""


class SourceSync:
    """Keeps each channel's Kommo source as its settings want it: created once, updated on change.

    A source declares its messenger's `services` (a WhatsApp number's: list messages, template reviews);
    one made before that, or adopted from Kommo with other services, gets them on its next sync. Should
    Kommo refuse them, the source is kept without them (chats must still land in the right pipeline) and
    the next process tries again."""

    def __init__(self, engine: AsyncEngine, rest: KommoRestClient, tokens: AccountTokens, origin_code: str) -> None:
        self._engine = engine
        self._rest = rest
        self._tokens = tokens
        self._origin_code = origin_code
        self._synced: dict[tuple[str, str], tuple[str, int, str]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def ensure(self, scope_id: str, spec: events_pb2.SourceSpec) -> None:
        if not spec.external_id:
            return
        key, wanted = (scope_id, spec.external_id), (spec.name, spec.pipeline_id, services_key(kommo_services(spec)))
        if self._synced.get(key) == wanted:
            return
        async with self._locks.setdefault(key, asyncio.Lock()):  # one caller per process
            if self._synced.get(key) != wanted:
                await self._sync(scope_id, spec)
                self._synced[key] = wanted

    async def _sync(self, scope_id: str, spec: events_pb2.SourceSpec) -> None:
        where = (kommo_sources.c.scope_id == scope_id) & (kommo_sources.c.external_id == spec.external_id)
        async with self._engine.begin() as conn:
            # One replica at a time per source; the others find the row it wrote.
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"source:{scope_id}:{spec.external_id}"}
            )
            row = (await conn.execute(select(kommo_sources).where(where))).first()
            wanted = (spec.name, spec.pipeline_id, services_key(kommo_services(spec)))
            if row is not None and (row.name, row.pipeline_id, row.services) == wanted:
                return
            known = int(row.kommo_source_id) if row is not None else 0

            async def in_kommo(access: AccountAccess) -> tuple[int, str]:
                return await self._put_source(access, known, spec)

            source_id, services = await self._tokens.using(scope_id, in_kommo)
            given = {"kommo_source_id": source_id, "name": spec.name, "pipeline_id": spec.pipeline_id}
            await conn.execute(
                insert(kommo_sources)
                .values(scope_id=scope_id, external_id=spec.external_id, services=services, **given)
                .on_conflict_do_update(
                    index_elements=[kommo_sources.c.scope_id, kommo_sources.c.external_id],
                    set_={**given, "services": services},
                )
            )
        log.info(
            "kommo source synced",
            extra={"scope_id": scope_id, "source_external_id": spec.external_id, "source_id": source_id},
        )

    async def _put_source(self, access: AccountAccess, known_id: int, spec: events_pb2.SourceSpec) -> tuple[int, str]:
        """Create, adopt or update the source in Kommo; its id and the `services` key it was given ("" when
        it declares none, or Kommo refused them)."""
        services = kommo_services(spec)
        key = services_key(services)
        wanted = (spec.name, spec.pipeline_id, key)
        source_id, current = known_id, None
        if not source_id:
            found = await self._rest.find_source(access, spec.external_id)
            if found is not None:
                # A source declaring nothing leaves whatever Kommo's has alone.
                source_id, current = (
                    found.id,
                    (found.name, found.pipeline_id, services_key(found.services) if key else ""),
                )
        if not source_id:
            create = self._rest.create_source
            try:
                created = await create(
                    access, spec.external_id, spec.name, spec.pipeline_id, self._origin_code, services
                )
            except BadRequestError as exc:
                if not services:
                    raise
                self._services_refused(spec, exc)
                created = await create(access, spec.external_id, spec.name, spec.pipeline_id, self._origin_code)
                return created.id, ""
            return created.id, key
        if current != wanted:
            # 0 means "the main pipeline": name it, so a source moved elsewhere comes back.
            pipeline_id = spec.pipeline_id or await self._main_pipeline(access)
            try:
                await self._rest.update_source(access, source_id, spec.name, pipeline_id, services or None)
            except BadRequestError as exc:
                if not services:
                    raise
                self._services_refused(spec, exc)
                await self._rest.update_source(access, source_id, spec.name, pipeline_id)
                return source_id, ""
        return source_id, key

    @staticmethod
    def _services_refused(spec: events_pb2.SourceSpec, exc: BadRequestError) -> None:
        log.warning(
            "kommo refused the source's services; the source is kept without them",
            extra={"source_external_id": spec.external_id, "reason": str(exc)},
        )

    async def _main_pipeline(self, access: AccountAccess) -> int:
        for pipeline in await self._rest.pipelines(access):
            if pipeline.get("is_main") and isinstance(pipeline.get("id"), int):
                return int(pipeline["id"])
        return 0


class ChatSetup:
    """What a conversation's first message needs before it goes: the source, the contact link."""

    def __init__(
        self, engine: AsyncEngine, amojo: AmojoClient, rest: KommoRestClient, tokens: AccountTokens, sources: SourceSync
    ) -> None:
        self._engine = engine
        self._amojo = amojo
        self._rest = rest
        self._tokens = tokens
        self._sources = sources
        self._ready: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def _known(self, scope_id: str, conversation_id: str) -> bool:
        """Whether the chat is set up and its Kommo id recorded; remembered per process, so a running
        conversation costs no query (a restarted process asks the table once per conversation)."""
        key = (scope_id, conversation_id)
        if key in self._ready:
            return True
        where = (kommo_chats.c.scope_id == scope_id) & (kommo_chats.c.conversation_id == conversation_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(kommo_chats.c.kommo_chat_id).where(where))).first()
        if row is not None and row.kommo_chat_id:
            self._remember(key)
        return row is not None

    def _remember(self, key: tuple[str, str]) -> None:
        self._ready[key] = None
        if len(self._ready) > KNOWN_CHATS_CACHED:
            self._ready.popitem(last=False)

    async def prepare(self, command: events_pb2.DeliverToKommo) -> bool:
        """Sync the source and link the contact, before a conversation's first message reaches Kommo
        (`delivered` records that it did); True when this is that first message. Kommo refusing either
        does not stop the message: the chat then lands in the integration's default source / gets a new
        contact. A chat a manager opened by write first has its contact already: nothing is linked."""
        if await self._known(command.scope_id, command.conversation_id):
            return False
        try:
            await self._sources.ensure(command.scope_id, command.source)
        except PermanentError as exc:
            log.warning(
                "kommo source not synced; the chat lands in the integration's default source",
                extra={"conversation_id": command.conversation_id, "reason": str(exc)},
            )
        chat_id, contact_id = "", 0
        profile = command.sender
        linking = command.contact_rule == events_pb2.CONTACT_RULE_LINK_EXISTING and not command.conversation_ref_id
        if linking and (profile.phone or profile.email):
            try:
                chat_id, contact_id = await self._link_existing(command)
            except PermanentError as exc:
                log.warning(
                    "could not link the chat to an existing contact; Kommo creates a new one",
                    extra={"conversation_id": command.conversation_id, "reason": str(exc)},
                )
        if chat_id:
            # Linked before the first message: remembered now, so a retry does not look up again.
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(kommo_chats)
                    .values(
                        scope_id=command.scope_id,
                        conversation_id=command.conversation_id,
                        kommo_chat_id=chat_id,
                        contact_id=contact_id,
                    )
                    .on_conflict_do_nothing()
                )
        return True

    async def _link_existing(self, command: events_pb2.DeliverToKommo) -> tuple[str, int]:
        """Create the chat empty and link it to the contact with the client's phone / e-mail, if any."""

        async def find(access: AccountAccess) -> tuple[AccountAccess, Contact | None]:
            return access, await self._rest.find_contact_by(access, command.sender.phone, command.sender.email)

        access, contact = await self._tokens.using(command.scope_id, find)
        if contact is None:
            return "", 0
        chat = await self._amojo.create_chat(
            command.scope_id,
            command.conversation_id,
            participant_for(command.sender_id, command.sender),
            command.source_external_id,
        )
        contact_id = await self._link(access, contact.id, chat.chat_id)
        log.info(
            "chat linked to an existing contact",
            extra={"conversation_id": command.conversation_id, "contact_id": contact_id},
        )
        return chat.chat_id, contact_id

    async def _link(self, access: AccountAccess, contact_id: int, chat_id: str) -> int:
        try:
            await self._rest.link_chat(access, contact_id, chat_id)
            return contact_id
        except BadRequestError:
            # A retry after a crash finds the link made; any other refusal is real.
            linked = await self._rest.contact_of_chat(access, chat_id)
            if linked:
                return linked
            raise

    async def delivered(self, scope_id: str, conversation_id: str, kommo_chat_id: str) -> None:
        """Remember the chat id amojo answered the first message with (the contact is found through it)."""
        if (scope_id, conversation_id) in self._ready:
            return
        self._remember((scope_id, conversation_id))
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(kommo_chats)
                .values(scope_id=scope_id, conversation_id=conversation_id, kommo_chat_id=kommo_chat_id)
                .on_conflict_do_nothing()
            )


class ProfileUpdater:
    """Carries a client's new name, phone or e-mail to their Kommo contact."""

    def __init__(self, engine: AsyncEngine, rest: KommoRestClient, tokens: AccountTokens) -> None:
        self._engine = engine
        self._rest = rest
        self._tokens = tokens

    async def handle(self, delivery: Delivery) -> None:
        command = delivery.decode(events_pb2.UpdateContactProfile)
        where = (kommo_chats.c.scope_id == command.scope_id) & (
            kommo_chats.c.conversation_id == command.conversation_id
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(kommo_chats).where(where))).first()
        if row is None or not row.kommo_chat_id:
            # The first message travels in the message lanes and may not have reached Kommo yet.
            if delivery.attempt >= CHAT_WAIT_ATTEMPTS:
                raise PermanentError("the conversation's chat never reached Kommo; no contact to update")
            raise RetryableError("the chat is not in Kommo yet", retry_after=CONTACT_PENDING_RETRY_S)
        profile = command.profile

        async def carry(access: AccountAccess) -> int:
            contact_id = row.contact_id or await self._rest.contact_of_chat(access, row.kommo_chat_id)
            if not contact_id:
                # Kommo makes the contact asynchronously after the first message; come back shortly.
                raise RetryableError("the chat's contact does not exist yet", retry_after=CONTACT_PENDING_RETRY_S)
            await self._rest.update_contact(access, contact_id, profile.name, profile.phone, profile.email)
            return int(contact_id)

        try:
            contact_id = await self._tokens.using(command.scope_id, carry)
        except NotFoundError as exc:
            log.warning("profile not carried to Kommo", extra={"reason": str(exc)})
            return
        if not row.contact_id:
            async with self._engine.begin() as conn:
                await conn.execute(update(kommo_chats).where(where).values(contact_id=contact_id))
        log.info(
            "contact profile updated", extra={"conversation_id": command.conversation_id, "contact_id": contact_id}
        )
