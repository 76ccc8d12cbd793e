"""The emulated amojo's state and the Kommo side of a chat (a manager's reply sent as a webhook).

Inspectable in-process (methods here) and over HTTP (`control.py`). Mutations hold a lock so a test on
another thread reads consistent snapshots.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from libs.emulation import FaultInjector, RequestLog
from libs.errors import BadRequestError, NotFoundError
from libs.kommo.emulator.attachments import AttachmentStore
from libs.kommo.emulator.crm import CrmState
from libs.kommo.emulator.media_downloads import MediaDownloader
from libs.kommo.emulator.records import (
    Channel,
    Chat,
    Connection,
    DeliveryStatus,
    HookResult,
    Message,
    Reaction,
    Typing,
    User,
)
from libs.kommo.payloads import encode_body
from libs.kommo.signing import CONTENT_TYPE, hook_signature

HOOK_TIMEOUT_S: Final = 5.0
HOOK_MESSAGE_TYPES: Final = frozenset(
    {"text", "file", "video", "picture", "voice", "audio", "sticker", "location", "contact"}
)
"""`message.message.type` values a chat hook carries: §9's list, plus location and contact. ASSUMPTION: §9
omits those two, but they are amojo message types (§4) whose fields embedded messages in hooks carry, and
a Salesbot can send them; the bridge must not lose them if they come."""
MEDIA_HOOK_TYPES: Final = frozenset({"file", "video", "picture", "voice", "audio"})


def embedded(message: Message) -> dict[str, Any]:
    """A message as hooks embed it (`reply_to.message`, §9): ids, content and the sender."""
    body = message.message
    out: dict[str, Any] = {"id": message.kommo_msgid}
    if message.msgid:
        out["msgid"] = message.msgid
    out.update({key: body[key] for key in ("type", "text", "media", "file_name", "file_size") if key in body})
    out.update({"timestamp": message.timestamp_ms // 1000, "msec_timestamp": message.timestamp_ms})
    out["sender"] = {"id": message.sender.id}
    return out


def rendered(template: dict[str, Any]) -> str:
    """A chat template's text as the manager sent it: its content with each param's key replaced."""
    text = str(template.get("content") or "")
    for param in template.get("params") or []:
        text = text.replace(str(param["key"]), str(param["value"]))
    return text


class AmojoState:
    """Everything the emulated amojo knows; inspectable in-process and over `/_emulator/…` routes.

    Mutations hold a lock so tests on another thread read consistent snapshots. `crm` is the CRM that
    chats and incoming messages reach (share one with the account emulator to serve it over REST).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        hook_http: httpx.AsyncClient | None = None,
        hook_timeout_s: float = HOOK_TIMEOUT_S,
        crm: CrmState | None = None,
    ) -> None:
        self.crm = crm if crm is not None else CrmState(clock=clock)
        self.log = RequestLog()
        self.faults = FaultInjector()
        self.hook_timeout_s = hook_timeout_s
        self.manager = User(id=str(uuid.uuid4()), name="Manager")
        self._clock = clock or (lambda: datetime.now(UTC))
        self._hook_http = hook_http
        self._owns_hook_http = False
        self._lock = threading.RLock()
        self._channels: dict[str, Channel] = {}
        self._connections: dict[str, Connection] = {}
        self._users: dict[tuple[str, str], User] = {}
        self._chats: dict[str, Chat] = {}
        self._chat_by_conversation: dict[tuple[str, str], str] = {}
        self._messages: list[Message] = []
        self._by_kommo_msgid: dict[str, Message] = {}
        self._by_msgid: dict[tuple[str, str], Message] = {}
        self._statuses: dict[str, list[DeliveryStatus]] = {}
        self._typing: list[Typing] = []
        self._hooks: list[HookResult] = []
        # Kommo downloads each accepted message's `media` (§4), as amojo does, in the background.
        self.media = MediaDownloader()
        self._reactions: list[Reaction] = []
        # Files managers attach (served at /attachments/…, on disk).
        self.attachments = AttachmentStore()

    def now(self) -> datetime:
        return self._clock()

    # -- channels and connections

    def register_channel(self, channel_id: str, secret: str, hook_url: str, code: str = "") -> Channel:
        """Register a channel as Kommo support would; `hook_url` may contain `:scope_id`."""
        if not channel_id or "_" in channel_id or "/" in channel_id:
            raise BadRequestError("channel_id must be non-empty and contain no '_' or '/'")
        if not secret:
            raise BadRequestError("a channel needs a secret")
        channel = Channel(channel_id=channel_id, secret=secret, hook_url=hook_url, code=code)
        with self._lock:
            self._channels[channel_id] = channel
        return channel

    def channel(self, channel_id: str) -> Channel | None:
        with self._lock:
            return self._channels.get(channel_id)

    def channels(self) -> list[Channel]:
        with self._lock:
            return list(self._channels.values())

    def connect(self, channel_id: str, account_id: str, title: str, time_window_disabled: bool) -> Connection:
        scope_id = f"{channel_id}_{account_id}"
        with self._lock:
            connection = Connection(scope_id, channel_id, account_id, title, "v2", time_window_disabled)
            self._connections[scope_id] = connection
            return connection

    def disconnect(self, channel_id: str, account_id: str) -> bool:
        with self._lock:
            connection = self._connections.get(f"{channel_id}_{account_id}")
            if connection is None or not connection.connected:
                return False
            connection.connected = False
            return True

    def connection(self, scope_id: str) -> Connection | None:
        with self._lock:
            connection = self._connections.get(scope_id)
            return connection if connection is not None and connection.connected else None

    def connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections.values())

    def _amojo_account(self, scope_id: str) -> str:
        """The amojo account id of a scope (`{channel_id}_{amojo_account_id}`, §0)."""
        connection = self._connections.get(scope_id)
        return connection.account_id if connection is not None else scope_id.partition("_")[2]

    # -- chats, messages, statuses (read side)

    def chats(self, scope_id: str = "") -> list[Chat]:
        with self._lock:
            return [c for c in self._chats.values() if not scope_id or c.scope_id == scope_id]

    def chat_for(self, scope_id: str, conversation_id: str) -> Chat | None:
        with self._lock:
            chat_id = self._chat_by_conversation.get((scope_id, conversation_id))
            return self._chats.get(chat_id) if chat_id else None

    def messages(self, conversation_id: str = "", scope_id: str = "") -> list[Message]:
        """Messages in arrival order, optionally of one conversation (our id)."""
        with self._lock:
            return [
                m
                for m in self._messages
                if (not conversation_id or m.conversation_id == conversation_id)
                and (not scope_id or m.scope_id == scope_id)
            ]

    def message(self, kommo_msgid: str) -> Message | None:
        with self._lock:
            return self._by_kommo_msgid.get(kommo_msgid)

    def statuses(self, kommo_msgid: str) -> list[DeliveryStatus]:
        """Every delivery status posted for a message, in order."""
        with self._lock:
            return list(self._statuses.get(kommo_msgid, []))

    def all_statuses(self) -> dict[str, list[DeliveryStatus]]:
        with self._lock:
            return {k: list(v) for k, v in self._statuses.items()}

    def typing_events(self) -> list[Typing]:
        with self._lock:
            return list(self._typing)

    def hook_results(self) -> list[HookResult]:
        with self._lock:
            return list(self._hooks)

    def reactions(self) -> list[Reaction]:
        """Every reaction the integration posted (§8), in order."""
        with self._lock:
            return list(self._reactions)

    def find_message(self, scope_id: str, kommo_msgid: str = "", msgid: str = "") -> Message | None:
        """A message of the scope by Kommo's id, else by the integration's msgid."""
        with self._lock:
            found = self._by_kommo_msgid.get(kommo_msgid) if kommo_msgid else self._by_msgid.get((scope_id, msgid))
            return found if found is not None and found.scope_id == scope_id else None

    # -- write side, used by the request handlers (bodies are validated before they get here)

    def upsert_user(self, scope_id: str, participant: dict[str, Any]) -> User:
        """Kommo's user for one of our participant ids, created on first sight, profile kept fresh."""
        client_id = participant["id"]
        profile = participant.get("profile") or {}
        with self._lock:
            user = self._users.get((scope_id, client_id))
            if user is None:
                user = User(id=str(uuid.uuid4()), client_id=client_id)
                self._users[(scope_id, client_id)] = user
            user.name = participant.get("name") or user.name
            user.avatar = participant.get("avatar") or user.avatar
            user.profile_link = participant.get("profile_link") or user.profile_link
            user.phone = profile.get("phone") or user.phone
            user.email = profile.get("email") or user.email
            return user

    def open_chat(
        self, scope_id: str, conversation_id: str, client: User, source_external_id: str, conversation_ref_id: str = ""
    ) -> Chat:
        """The chat of a conversation, created on first use; `conversation_ref_id` binds a write-first chat."""
        with self._lock:
            if conversation_ref_id:
                chat = self._chats.get(conversation_ref_id)
                if chat is None or chat.scope_id != scope_id:
                    raise BadRequestError(f"conversation_ref_id {conversation_ref_id!r} is not a chat of this scope")
                if chat.conversation_id and chat.conversation_id != conversation_id:
                    raise BadRequestError("conversation_ref_id is already bound to another conversation_id")
                chat.conversation_id = conversation_id
                self._chat_by_conversation[(scope_id, conversation_id)] = chat.kommo_chat_id
                return chat
            chat_id = self._chat_by_conversation.get((scope_id, conversation_id))
            if chat_id is not None:
                return self._chats[chat_id]
            chat = Chat(str(uuid.uuid4()), scope_id, conversation_id, client, source_external_id, time.time())
            self._chats[chat.kommo_chat_id] = chat
            self._chat_by_conversation[(scope_id, conversation_id)] = chat.kommo_chat_id
            self.crm.register_chat(self._amojo_account(scope_id), chat.kommo_chat_id)
            return chat

    def create_chat(self, scope_id: str, conversation_id: str, user: dict[str, Any], source_external_id: str) -> Chat:
        """`POST /{scope_id}/chats`: idempotent per conversation_id (§3)."""
        with self._lock:
            client = self.upsert_user(scope_id, user)
            return self.open_chat(scope_id, conversation_id, client, source_external_id)

    def accept_new_message(
        self,
        scope_id: str,
        payload: dict[str, Any],
        message: dict[str, Any],
        sender: dict[str, Any],
        receiver: dict[str, Any] | None,
        source_external_id: str,
    ) -> dict[str, Any]:
        """Store a validated `new_message` payload and return amojo's answer (§4), atomically.

        Without `receiver` the sender is the client (incoming); with one, the message is a reply written
        elsewhere and imported, and `sender.ref_id` is the manager's or bot's amojo id.
        """
        msgid: str = payload["msgid"]
        with self._lock:
            # §13.7: amojo rejects a duplicate msgid with an undocumented error. ASSUMPTION: we answer
            # the first response again and store nothing, so a retried send is harmless and visible.
            duplicate = self._by_msgid.get((scope_id, msgid))
            if duplicate is not None:
                return duplicate.response
            self._check_quote(scope_id, payload)
            if receiver is None:
                self._bind_write_first_client(scope_id, payload.get("conversation_ref_id") or "", sender)
                client = self.upsert_user(scope_id, sender)
                sender_user, receiver_user, direction = client, None, "incoming"
            else:
                client = self.upsert_user(scope_id, receiver)
                ref_id = sender.get("ref_id") or ""
                sender_user = User(id=ref_id, name=sender["name"]) if ref_id else self.upsert_user(scope_id, sender)
                receiver_user, direction = client, "outgoing"
            chat = self.open_chat(
                scope_id, payload["conversation_id"], client, source_external_id, payload.get("conversation_ref_id", "")
            )
            kommo_msgid = str(uuid.uuid4())
            response = {
                "new_message": {
                    "conversation_id": chat.kommo_chat_id,
                    "sender_id": sender_user.id,
                    "receiver_id": receiver_user.id if receiver_user else None,
                    "msgid": kommo_msgid,
                    "ref_id": msgid,
                }
            }
            self._store(
                Message(
                    kommo_msgid=kommo_msgid,
                    scope_id=scope_id,
                    kommo_chat_id=chat.kommo_chat_id,
                    conversation_id=payload["conversation_id"],
                    msgid=msgid,
                    direction=direction,
                    sender=sender_user,
                    receiver=receiver_user,
                    message=message,
                    timestamp_ms=payload["msec_timestamp"],
                    payload=payload,
                    response=response,
                    received_at=time.time(),
                    silent=bool(payload.get("silent", False)),
                )
            )
            if direction == "incoming":
                self._reach_crm(scope_id, chat, client, source_external_id, payload, message)
            return response

    def _bind_write_first_client(self, scope_id: str, conversation_ref_id: str, sender: dict[str, Any]) -> None:
        """§9: the first message into a chat a manager opened by write first names that chat
        (`conversation_ref_id`) and its client (`sender.ref_id` = the hook's `receiver.id`); Kommo's user of
        that client is the integration's `sender.id` from then on."""
        chat = self._chats.get(conversation_ref_id) if conversation_ref_id else None
        if chat is None or chat.scope_id != scope_id or chat.client.client_id:
            return  # not a write-first chat waiting for its client (open_chat refuses a wrong one)
        if sender.get("ref_id") != chat.client.id:
            raise BadRequestError(
                "payload.sender.ref_id must be the write-first chat's client (the hook's receiver.id)"
            )
        chat.client.client_id = sender["id"]
        self._users[(scope_id, sender["id"])] = chat.client

    def _check_quote(self, scope_id: str, payload: dict[str, Any]) -> None:
        """§4: `reply_to` quotes a message of the same chat only (validated as {id} or {msgid} before)."""
        reply_to = payload.get("reply_to")
        if not reply_to:
            return
        quoted = reply_to["message"]
        target = self.find_message(scope_id, quoted.get("id") or "", quoted.get("msgid") or "")
        ref_id = payload.get("conversation_ref_id") or ""
        if target is None or (target.conversation_id != payload["conversation_id"] and target.kommo_chat_id != ref_id):
            raise BadRequestError("payload.reply_to.message is not a message of this chat")

    def _reach_crm(
        self,
        scope_id: str,
        chat: Chat,
        client: User,
        source_external_id: str,
        payload: dict[str, Any],
        message: dict[str, Any],
    ) -> None:
        """An incoming message reaches the CRM, where the chat's first non-silent one makes a lead (§4).
        Without a source of its own, the message keeps the one its chat was created with (§3)."""
        connection = self._connections.get(scope_id)
        channel = self._channels.get(connection.channel_id) if connection is not None else None
        service = channel.code if channel is not None and channel.code else scope_id.partition("_")[0]
        self.crm.chat_message(
            self._amojo_account(scope_id),
            chat.kommo_chat_id,
            client,
            source_external_id or chat.source_external_id,
            silent=bool(payload.get("silent", False)),
            text=str(message.get("text") or ""),
            service=service,
            integration_name=connection.title if connection is not None else "",
        )

    def apply_edit(self, scope_id: str, payload: dict[str, Any], message: dict[str, Any]) -> Message:
        """Apply a validated `edit_message` to the message named by `id` (Kommo's) or `msgid` (ours)."""
        kommo_id = payload.get("id") or ""
        msgid = payload.get("msgid") or ""
        with self._lock:
            target = self._by_kommo_msgid.get(kommo_id) if kommo_id else self._by_msgid.get((scope_id, msgid))
            if target is None or target.scope_id != scope_id or target.conversation_id != payload["conversation_id"]:
                raise BadRequestError("the message to edit does not exist in this conversation")
            target.edits.append(payload)
            target.message = {**target.message, **message}
            if kommo_id and msgid and not target.msgid:  # §4: an edit by id may attach our msgid
                target.msgid = msgid
                self._by_msgid[(scope_id, msgid)] = target
            return target

    def add_status(self, status: DeliveryStatus) -> None:
        with self._lock:
            self._statuses.setdefault(status.kommo_msgid, []).append(status)

    def add_typing(self, typing: Typing) -> None:
        with self._lock:
            self._typing.append(typing)

    def add_reaction(self, reaction: Reaction) -> None:
        with self._lock:
            self._reactions.append(reaction)

    def _store(self, message: Message) -> None:
        with self._lock:
            self._messages.append(message)
            self._by_kommo_msgid[message.kommo_msgid] = message
            if message.msgid:
                self._by_msgid[(message.scope_id, message.msgid)] = message

    # -- the Kommo side: a manager writes in a chat

    async def send_manager_message(
        self,
        scope_id: str,
        conversation_id: str,
        text: str = "",
        *,
        message_type: str = "text",
        media: str = "",
        file_name: str = "",
        file_size: int = 0,
        sticker_id: str = "",
        location: dict[str, float] | None = None,
        contact: dict[str, str] | None = None,
        manager_id: str = "",
        reply_to: str = "",
        media_group_id: str = "",
        template: dict[str, Any] | None = None,
        markup: dict[str, Any] | None = None,
        kommo_chat_id: str = "",
        phone: str = "",
        source_external_id: str = "",
    ) -> HookResult:
        """A manager replies in Kommo: build the v2 message hook (§9), sign it, POST it once.

        The chat is the conversation's (`conversation_id`, ours), or Kommo's chat `kommo_chat_id`, or, to
        write first, the chat Kommo opens for `phone` (the client's chat through this channel when one
        has that number). Until the integration binds such a chat (§4 `conversation_ref_id`), its hooks
        carry no `conversation.client_id` and no `receiver.client_id`. `template` is a chat template the
        manager picked, `{id, external_id, content, params[{key, value}]}`; the text is its content with
        the params put in. `markup` is sent as the hook's `message.markup` (inline buttons or a WhatsApp
        `list_message`, §9).

        The message is registered before the POST, so a delivery_status for its id succeeds even when
        the receiver reports it before answering the hook. `reply_to` (a Kommo message id of the same
        chat) quotes that message, as hooks do once quoting is enabled for the channel. An attachment sent
        with others is one hook each, all with the same `media_group_id` (§9).
        """
        if message_type not in HOOK_MESSAGE_TYPES:
            raise BadRequestError(f"hook message type must be one of {sorted(HOOK_MESSAGE_TYPES)}")
        if message_type == "text" and not (text or template or (markup or {}).get("list_message")):
            raise BadRequestError("a text message needs text")
        if message_type in MEDIA_HOOK_TYPES and not media:
            raise BadRequestError(f"a {message_type} message needs a media URL")
        if message_type == "sticker" and not (media or sticker_id):
            raise BadRequestError("a sticker message needs a media URL or a sticker_id")
        if message_type in ("location", "contact") and not (location if message_type == "location" else contact):
            raise BadRequestError(f"a {message_type} message needs its {message_type} object")
        if template is not None and not text:
            text = rendered(template)
        with self._lock:
            connection = self.connection(scope_id)
            if connection is None:
                raise NotFoundError(f"scope {scope_id!r} is not connected")
            channel = self._channels[connection.channel_id]
            if not channel.hook_url:
                raise BadRequestError(f"channel {channel.channel_id!r} has no hook URL")
            chat = self._manager_chat(scope_id, conversation_id, kommo_chat_id, phone, source_external_id)
            now_ms = int(self.now().timestamp() * 1000)
            sender = User(id=manager_id, name="Manager") if manager_id else self.manager
            body_message: dict[str, Any] = {"id": str(uuid.uuid4()), "type": message_type, "text": text}
            if message_type in MEDIA_HOOK_TYPES or media:
                body_message.update({"media": media, "file_name": file_name, "file_size": file_size})
            if sticker_id:
                body_message["sticker_id"] = sticker_id
            if location is not None:
                body_message["location"] = location
            if contact is not None:
                body_message["contact"] = contact
            if media_group_id:
                body_message["media_group_id"] = media_group_id
            if template is not None:
                body_message["template"] = template
            if markup is not None:  # buttons, or a Salesbot's `list_message` (§9)
                body_message["markup"] = markup
            receiver: dict[str, Any] = {"id": chat.client.id, "phone": chat.client.phone, "email": chat.client.email}
            conversation: dict[str, Any] = {"id": chat.kommo_chat_id}
            if chat.conversation_id:  # absent until a write-first chat is bound (§9)
                receiver["client_id"] = chat.client.client_id
                conversation["client_id"] = chat.conversation_id
            envelope: dict[str, Any] = {"receiver": receiver, "sender": {"id": sender.id}, "conversation": conversation}
            if chat.source_external_id:
                envelope["source"] = {"external_id": chat.source_external_id}
            envelope.update({"timestamp": now_ms // 1000, "msec_timestamp": now_ms, "message": body_message})
            if reply_to:
                quoted = self._by_kommo_msgid.get(reply_to)
                if quoted is None or quoted.kommo_chat_id != chat.kommo_chat_id:
                    raise BadRequestError(f"message {reply_to!r} is not in this chat")
                envelope["reply_to"] = {"message": embedded(quoted)}
            hook = {"account_id": connection.account_id, "time": now_ms // 1000, "message": envelope}
            record = Message(
                kommo_msgid=body_message["id"],
                scope_id=scope_id,
                kommo_chat_id=chat.kommo_chat_id,
                conversation_id=chat.conversation_id,
                msgid="",
                direction="manager",
                sender=sender,
                receiver=chat.client,
                message=body_message,
                timestamp_ms=now_ms,
                payload=hook,
                response={},
                received_at=time.time(),
            )
            self._store(record)
        return await self.deliver_hook(scope_id, hook, record.kommo_msgid)

    def _manager_chat(
        self, scope_id: str, conversation_id: str, kommo_chat_id: str, phone: str, source_external_id: str
    ) -> Chat:
        """The chat a manager writes in (see `send_manager_message`); called under the lock."""
        if conversation_id:
            chat = self.chat_for(scope_id, conversation_id)
            if chat is None:
                raise NotFoundError(f"no chat for conversation {conversation_id!r} in scope {scope_id!r}")
            return chat
        if kommo_chat_id:
            found = self._chats.get(kommo_chat_id)
            if found is None or found.scope_id != scope_id:
                raise NotFoundError(f"no chat {kommo_chat_id!r} in scope {scope_id!r}")
            return found
        wanted = "".join(c for c in phone if c.isdigit())
        if not wanted:
            raise BadRequestError("a manager message needs a conversation_id, a kommo_chat_id or a phone to write to")
        for chat in self._chats.values():
            if chat.scope_id == scope_id and "".join(c for c in chat.client.phone if c.isdigit()) == wanted:
                return chat  # the client already has a chat through this channel
        client = User(id=str(uuid.uuid4()), name=phone, phone=phone)
        chat = Chat(str(uuid.uuid4()), scope_id, "", client, source_external_id, time.time())
        self._chats[chat.kommo_chat_id] = chat
        self.crm.write_first_contact(self._amojo_account(scope_id), chat.kommo_chat_id, phone)
        return chat

    def edit_manager_message(self, kommo_msgid: str, text: str) -> tuple[str, dict[str, Any]]:
        """A manager changes a message written in Kommo: store the new text, return (scope_id, the
        message hook again with the same message id and the new content)."""
        with self._lock:
            record = self._by_kommo_msgid.get(kommo_msgid)
            if record is None or record.direction != "manager":
                raise NotFoundError(f"no manager message {kommo_msgid!r}")
            if not text:
                raise BadRequestError("an edit needs the new text")
            now_ms = int(self.now().timestamp() * 1000)
            hook = copy.deepcopy(record.payload)
            hook["time"] = now_ms // 1000
            hook["message"]["message"]["text"] = text
            record.message = {**record.message, "text": text}
            record.edits.append({"text": text, "msec_timestamp": now_ms})
            return record.scope_id, hook

    async def deliver_hook(self, scope_id: str, hook: dict[str, Any], kommo_msgid: str = "") -> HookResult:
        """Sign a hook body and POST it once to the channel's hook URL (§9); record what happened."""
        with self._lock:
            connection = self.connection(scope_id)
            if connection is None:
                raise NotFoundError(f"scope {scope_id!r} is not connected")
            channel = self._channels[connection.channel_id]
            if not channel.hook_url:
                raise BadRequestError(f"channel {channel.channel_id!r} has no hook URL")
            url = channel.hook_url.replace(":scope_id", scope_id)
            secret = channel.secret
        body = encode_body(hook)
        signature = hook_signature(secret, body)
        result = await self._post_hook(kommo_msgid, url, body, signature)
        with self._lock:
            self._hooks.append(result)
        return result

    async def _post_hook(self, kommo_msgid: str, url: str, body: bytes, signature: str) -> HookResult:
        if self._hook_http is None:
            self._hook_http = httpx.AsyncClient()
            self._owns_hook_http = True
        headers = {"Content-Type": CONTENT_TYPE, "X-Signature": signature}
        started = time.monotonic()
        status: int | None = None
        error = ""
        try:
            response = await self._hook_http.post(url, content=body, headers=headers, timeout=self.hook_timeout_s)
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - started
        return HookResult(kommo_msgid, url, status, elapsed, error, body, signature)

    async def aclose(self) -> None:
        await self.media.aclose()
        """Close the hook HTTP client if the emulator created it, and remove the attachments."""
        self.attachments.close()
        if self._owns_hook_http and self._hook_http is not None:
            await self._hook_http.aclose()
            self._hook_http = None
            self._owns_hook_http = False
