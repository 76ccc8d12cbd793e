"""The world behind the Telegram emulator: bots, their private chats with clients, every message either side
sent, flood limits, and webhook delivery that behaves like Telegram's (in order, retried until a 2xx).

The HTTP surface (Bot API methods and `/_emulator/...` control routes) is in `emulator.py`; this module holds
the state those routes read and change, so tests can also drive it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import secrets
import string
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from libs.emulation import FaultInjector, RequestLog
from libs.messengers.telegram.emulator_files import FileStore
from libs.messengers.telegram.emulator_uploads import UploadLog
from libs.messengers.telegram.flood import FloodControl, FloodLimits

if TYPE_CHECKING:
    from libs.messengers.telegram.emulator_buttons import CallbackQuery

WEBHOOK_AUTH_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_TOKEN_ALPHABET = string.ascii_letters + string.digits + "_-"
_TOKEN_RE = re.compile(r"^(\d{1,20}):[A-Za-z0-9_-]{35}$")
_BOT_USERNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{4,31}$")


class TelegramApiError(Exception):
    """A Bot API call failed; answered with Telegram's envelope and HTTP status = error_code."""

    def __init__(self, code: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _now() -> int:
    return int(time.time())


@dataclass
class Chat:
    """A private chat between a bot and one client. Message ids are shared by both directions, as in
    Telegram, and every message is kept so replies can quote it."""

    user: dict[str, Any]
    next_message_id: int = 1
    blocked: bool = False
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    # message_id -> user id (the client's or the bot's) -> the emoji that user reacted with.
    reactions: dict[int, dict[int, list[str]]] = field(default_factory=dict)

    @property
    def id(self) -> int:
        user_id: int = self.user["id"]
        return user_id

    def as_chat(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.id, "first_name": self.user["first_name"]}
        for key in ("last_name", "username"):
            if key in self.user:
                chat[key] = self.user[key]
        chat["type"] = "private"
        return chat

    def take_message_id(self) -> int:
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to an update on its first webhook attempt. `status` is None (and `attempts` 0) when it
    was not attempted: no webhook set, filtered by allowed_updates, or queued behind an undelivered one."""

    update: dict[str, Any]
    status: int | None
    attempts: int
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"update": self.update, "status": self.status, "attempts": self.attempts, "error": self.error}


@dataclass
class _Pending:
    update: dict[str, Any]
    first_attempt: asyncio.Future[DeliveryResult]
    attempts: int = 0
    first_attempt_at: float = 0.0


@dataclass
class Bot:
    id: int
    token: str
    username: str
    first_name: str
    next_update_id: int
    webhook_url: str = ""
    secret_token: str = ""
    max_connections: int = 40
    allowed_updates: list[str] | None = None
    last_error_date: int | None = None
    last_error_message: str | None = None
    chats: dict[int, Chat] = field(default_factory=dict)
    queue: deque[_Pending] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def as_user(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": True, "first_name": self.first_name, "username": self.username}


@dataclass(frozen=True)
class SentMessage:
    """A message a bot sent through the API, as Telegram returned it."""

    bot_id: int
    chat_id: int
    method: str
    message: dict[str, Any]
    # When the emulator accepted it (epoch seconds), for latency measurements.
    at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "bot_id": self.bot_id,
            "chat_id": self.chat_id,
            "method": self.method,
            "message": self.message,
            "at": self.at,
        }


@dataclass(frozen=True)
class ChatAction:
    bot_id: int
    chat_id: int
    action: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"bot_id": self.bot_id, "chat_id": self.chat_id, "action": self.action, "at": self.at}


@dataclass(frozen=True)
class BotReaction:
    """A setMessageReaction the emulator accepted: the bot's reactions on a message from then on."""

    bot_id: int
    chat_id: int
    message_id: int
    emoji: list[str]
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "bot_id": self.bot_id,
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "emoji": self.emoji,
            "at": self.at,
        }


def _client_user(user: dict[str, Any]) -> dict[str, Any]:
    """A Telegram User object for a client, from the sandbox's description of one."""
    user_id = user.get("id")
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
        raise ValueError("user.id must be a positive integer")
    first_name = user.get("first_name")
    if not isinstance(first_name, str) or not first_name:
        raise ValueError("user.first_name must be a non-empty string (Telegram requires one)")
    result: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
    for key in ("last_name", "username", "language_code"):
        value = user.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"user.{key} must be a string")
            result[key] = value
    return result


class TelegramState:
    """Everything the emulator knows. Delivery timing is configurable so tests need not wait for
    production-sized backoffs; `http` may be injected (e.g. an ASGI transport to a receiver)."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | None = None,
        limits: FloodLimits | None = None,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        give_up_after_s: float = 120.0,
        delivery_timeout_s: float = 10.0,
        require_https: bool = False,
        local_api: bool = False,
    ) -> None:
        self.log = RequestLog()
        # Client files on disk; `local_api` plays a self-hosted Bot API server (no download limit).
        self.files = FileStore(local_api=local_api)
        # Every file a bot sent (sendPhoto, sendDocument, ...): how it came and what it was.
        self.uploads = UploadLog()
        self.faults = FaultInjector()
        self.flood = FloodControl(limits)
        self.require_https = require_https
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.give_up_after_s = give_up_after_s
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=delivery_timeout_s)
        self._bots: dict[int, Bot] = {}
        self._by_token: dict[str, Bot] = {}
        self.sent: list[SentMessage] = []
        self.chat_actions: list[ChatAction] = []
        # What bots changed after sending (editMessageText / editMessageCaption) and their reactions.
        self.edits: list[SentMessage] = []
        self.reactions: list[BotReaction] = []
        # Taps on bots' callback buttons, by query id, and whether the bot answered (emulator_buttons).
        self.callback_queries: dict[str, CallbackQuery] = {}

    # -- bots -------------------------------------------------------------------------------------------

    def create_bot(self, username: str, first_name: str = "", token: str | None = None) -> Bot:
        """Register a bot as BotFather would. Raises ValueError for a bad or taken username or token."""
        if not _BOT_USERNAME_RE.match(username) or not username.lower().endswith("bot"):
            raise ValueError("a bot username is 5-32 characters of [A-Za-z0-9_], starts with a letter, ends in 'bot'")
        if any(b.username.lower() == username.lower() for b in self._bots.values()):
            raise ValueError(f"username {username!r} is taken")
        if token is None:
            bot_id = random.randint(1_000_000_000, 8_999_999_999)
            while bot_id in self._bots:
                bot_id += 1
            token = f"{bot_id}:" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(35))
        else:
            match = _TOKEN_RE.match(token)
            if match is None:
                raise ValueError("a bot token is '<numeric bot id>:<35 characters of [A-Za-z0-9_-]>'")
            bot_id = int(match.group(1))
            if bot_id in self._bots:
                raise ValueError(f"bot id {bot_id} already exists")
        bot = Bot(
            id=bot_id,
            token=token,
            username=username,
            first_name=first_name or username,
            next_update_id=random.randint(100_000_000, 900_000_000),
        )
        self._bots[bot_id] = bot
        self._by_token[token] = bot
        return bot

    def bot(self, bot_id: int) -> Bot:
        """The bot with this id; KeyError when there is none."""
        try:
            return self._bots[bot_id]
        except KeyError:
            raise KeyError(f"no bot with id {bot_id}") from None

    def bot_by_token(self, token: str) -> Bot | None:
        return self._by_token.get(token)

    def revoke_token(self, bot: Bot) -> str:
        """BotFather's /revoke: the same bot gets a new token, and the old one answers 401 from now on."""
        del self._by_token[bot.token]
        bot.token = f"{bot.id}:" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(35))
        self._by_token[bot.token] = bot
        return bot.token

    def webhook_failed(self, bot: Bot, message: str, at: int | None = None) -> None:
        """A failed webhook delivery as getWebhookInfo reports it (`last_error_date`, `last_error_message`),
        for tests that need one without making the bridge fail."""
        bot.last_error_date = at if at is not None else _now()
        bot.last_error_message = message

    def bots(self) -> list[Bot]:
        return list(self._bots.values())

    # -- what bots send ---------------------------------------------------------------------------------

    def bot_message(
        self,
        bot: Bot,
        chat: Chat,
        method: str,
        content: dict[str, Any],
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store and return the Message a successful send method answers with."""
        message: dict[str, Any] = {
            "message_id": chat.take_message_id(),
            "from": bot.as_user(),
            "chat": chat.as_chat(),
            "date": _now(),
        }
        if reply_to is not None:
            message["reply_to_message"] = {k: v for k, v in reply_to.items() if k != "reply_to_message"}
        message.update(content)
        chat.messages[message["message_id"]] = message
        self.sent.append(SentMessage(bot.id, chat.id, method, message, time.time()))
        return message

    def record_chat_action(self, bot: Bot, chat: Chat, action: str) -> None:
        self.chat_actions.append(ChatAction(bot.id, chat.id, action, time.time()))

    def sent_messages(self, bot_id: int | None = None, chat_id: int | None = None) -> list[SentMessage]:
        return [
            s for s in self.sent if (bot_id is None or s.bot_id == bot_id) and (chat_id is None or s.chat_id == chat_id)
        ]

    # -- webhook configuration --------------------------------------------------------------------------

    def set_webhook(
        self,
        bot: Bot,
        url: str,
        *,
        secret_token: str = "",
        max_connections: int | None = None,
        allowed_updates: list[str] | None = None,
        drop_pending_updates: bool = False,
    ) -> None:
        bot.webhook_url = url
        bot.secret_token = secret_token
        if max_connections is not None:
            bot.max_connections = max_connections
        if allowed_updates is not None:  # "If not specified, the previous setting will be used."
            bot.allowed_updates = allowed_updates
        if drop_pending_updates:
            self._drop_pending(bot)
        bot.last_error_date = None
        bot.last_error_message = None
        if url:
            bot.wake.set()
            self._ensure_worker(bot)

    def delete_webhook(self, bot: Bot, *, drop_pending_updates: bool = False) -> None:
        bot.webhook_url = ""
        bot.secret_token = ""
        if drop_pending_updates:
            self._drop_pending(bot)
        bot.wake.set()

    def webhook_info(self, bot: Bot) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": bot.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(bot.queue),
        }
        if bot.last_error_date is not None:
            info["last_error_date"] = bot.last_error_date
            info["last_error_message"] = bot.last_error_message
        if bot.webhook_url:
            info["max_connections"] = bot.max_connections
            if bot.allowed_updates:
                info["allowed_updates"] = list(bot.allowed_updates)
        return info

    def take_updates(self, bot: Bot, offset: int | None, limit: int) -> list[dict[str, Any]]:
        """getUpdates: confirm (drop) updates below `offset`, return up to `limit` of the rest."""
        if offset is not None:
            if offset < 0:  # a negative offset keeps only the last -offset updates
                while len(bot.queue) > -offset:
                    self._finish(bot.queue.popleft(), None, "confirmed through getUpdates")
            else:
                while bot.queue and bot.queue[0].update["update_id"] < offset:
                    self._finish(bot.queue.popleft(), None, "confirmed through getUpdates")
        bot.arrived.clear()
        return [p.update for p in list(bot.queue)[:limit]]

    # -- the client side --------------------------------------------------------------------------------

    def _chat_for(self, bot: Bot, user: dict[str, Any]) -> Chat:
        chat = bot.chats.get(user["id"])
        if chat is None:
            chat = bot.chats[user["id"]] = Chat(user=user)
        else:
            chat.user = user  # names and usernames change; messages carry the current ones
        return chat

    async def client_message(
        self,
        bot_id: int,
        user: dict[str, Any],
        text: str | None = None,
        message: dict[str, Any] | None = None,
    ) -> DeliveryResult:
        """A client writes to the bot. `message` holds content fields of a Telegram Message (photo, sticker,
        location, caption, ...; a `reply_to_message_id` is expanded into `reply_to_message`); the emulator
        fills in message_id, date, chat and from. Waits for the first webhook attempt."""
        bot = self.bot(bot_id)
        sender = _client_user(user)
        content = dict(message or {})
        if text is not None:
            content["text"] = text
        for key in ("message_id", "date", "chat", "from"):
            content.pop(key, None)
        if not content:
            raise ValueError("a client message needs text or message content")
        chat = self._chat_for(bot, sender)
        reply_id = content.pop("reply_to_message_id", None)
        if reply_id is not None:
            original = chat.messages.get(reply_id) if isinstance(reply_id, int) else None
            if original is None:
                raise ValueError(f"reply_to_message_id {reply_id!r} is not a message of this chat")
            content["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
        if chat.blocked:
            # A client who blocked the bot has to press "Restart" to write again, which unblocks it.
            self._change_membership(bot, chat, blocked=False)
        msg: dict[str, Any] = {
            "message_id": chat.take_message_id(),
            "from": sender,
            "chat": chat.as_chat(),
            "date": _now(),
            **content,
        }
        chat.messages[msg["message_id"]] = msg
        return await self._submit(bot, "message", msg)

    async def block(self, bot_id: int, user_id: int) -> DeliveryResult:
        """The client blocks the bot: a my_chat_member update ("kicked"), and sends to them answer 403."""
        bot = self.bot(bot_id)
        chat = self._known_chat(bot, user_id)
        if chat.blocked:
            raise ValueError(f"user {user_id} has already blocked bot {bot_id}")
        return await self._wait(self._change_membership(bot, chat, blocked=True))

    async def unblock(self, bot_id: int, user_id: int) -> DeliveryResult:
        bot = self.bot(bot_id)
        chat = self._known_chat(bot, user_id)
        if not chat.blocked:
            raise ValueError(f"user {user_id} has not blocked bot {bot_id}")
        return await self._wait(self._change_membership(bot, chat, blocked=False))

    def _known_chat(self, bot: Bot, user_id: int) -> Chat:
        chat = bot.chats.get(user_id)
        if chat is None:
            raise KeyError(f"user {user_id} never wrote to bot {bot.id}")
        return chat

    def _change_membership(self, bot: Bot, chat: Chat, *, blocked: bool) -> asyncio.Future[DeliveryResult]:
        chat.blocked = blocked
        member = {"user": bot.as_user(), "status": "member"}
        kicked = {"user": bot.as_user(), "status": "kicked", "until_date": 0}
        update = {
            "chat": chat.as_chat(),
            "from": chat.user,
            "date": _now(),
            "old_chat_member": member if blocked else kicked,
            "new_chat_member": kicked if blocked else member,
        }
        return self._enqueue(bot, "my_chat_member", update)

    # -- webhook delivery -------------------------------------------------------------------------------

    async def deliver_update(self, bot: Bot, kind: str, payload: dict[str, Any]) -> DeliveryResult:
        """Queue an update of `kind` (an edit, a reaction, ...) like any other; wait for its first attempt."""
        return await self._submit(bot, kind, payload)

    async def _submit(self, bot: Bot, kind: str, payload: dict[str, Any]) -> DeliveryResult:
        return await self._wait(self._enqueue(bot, kind, payload))

    @staticmethod
    async def _wait(future: asyncio.Future[DeliveryResult]) -> DeliveryResult:
        # Shielded: a caller that gives up waiting must not cancel the delivery bookkeeping.
        return await asyncio.shield(future)

    def _enqueue(self, bot: Bot, kind: str, payload: dict[str, Any]) -> asyncio.Future[DeliveryResult]:
        """Queue an update (Telegram keeps them until delivered or given up). The future resolves on the
        update's first delivery attempt, or at once when no attempt can happen now."""
        future: asyncio.Future[DeliveryResult] = asyncio.get_running_loop().create_future()
        if bot.allowed_updates and kind not in bot.allowed_updates:
            future.set_result(DeliveryResult({kind: payload}, None, 0, f"{kind} is not in allowed_updates"))
            return future
        update = {"update_id": bot.next_update_id, kind: payload}
        bot.next_update_id += 1
        pending = _Pending(update, future)
        bot.queue.append(pending)
        bot.arrived.set()
        if not bot.webhook_url:
            future.set_result(DeliveryResult(update, None, 0, "no webhook is set; the update is pending"))
        elif len(bot.queue) > 1 and bot.queue[0].attempts > 0:
            future.set_result(DeliveryResult(update, None, 0, self._behind(bot.queue[0])))
        self._ensure_worker(bot)
        return future

    @staticmethod
    def _behind(head: _Pending) -> str:
        return f"queued behind undelivered update {head.update['update_id']}"

    @staticmethod
    def _finish(pending: _Pending, status: int | None, error: str | None) -> None:
        if not pending.first_attempt.done():
            pending.first_attempt.set_result(DeliveryResult(pending.update, status, pending.attempts, error))

    def _drop_pending(self, bot: Bot) -> None:
        while bot.queue:
            self._finish(bot.queue.popleft(), None, "dropped with drop_pending_updates")

    def _ensure_worker(self, bot: Bot) -> None:
        if bot.webhook_url and bot.queue and (bot.worker is None or bot.worker.done()):
            bot.worker = asyncio.get_running_loop().create_task(self._deliver(bot), name=f"telegram-deliver-{bot.id}")

    async def _deliver(self, bot: Bot) -> None:
        """One worker per bot delivers the queue head until it gets a 2xx, so updates arrive in order."""
        delay = self.retry_initial_s
        while bot.queue and bot.webhook_url:
            head = bot.queue[0]
            if head.attempts == 0:
                head.first_attempt_at = time.monotonic()
            status, error = await self._post(bot, head.update)
            head.attempts += 1
            self._finish(head, status, error)
            delivered = status is not None and 200 <= status < 300
            gave_up = not delivered and time.monotonic() - head.first_attempt_at >= self.give_up_after_s
            if not delivered:
                bot.last_error_date = _now()
                bot.last_error_message = error
                for later in list(bot.queue)[1:]:
                    self._finish(later, None, self._behind(head))
            if delivered or gave_up:
                if bot.queue and bot.queue[0] is head:
                    bot.queue.popleft()
                delay = self.retry_initial_s
                continue
            bot.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bot.wake.wait(), delay)
            delay = min(self.retry_max_s, delay * 2)

    async def _post(self, bot: Bot, update: dict[str, Any]) -> tuple[int | None, str | None]:
        headers = {"Content-Type": "application/json"}
        if bot.secret_token:
            headers[WEBHOOK_AUTH_HEADER] = bot.secret_token
        try:
            response = await self._http.post(bot.webhook_url, content=json.dumps(update).encode(), headers=headers)
        except httpx.TimeoutException:
            return None, "Read timeout expired"
        except httpx.ConnectError:
            return None, "Connection refused"
        except Exception as exc:  # anything else must not kill the bot's delivery worker
            return None, f"Failed to deliver the update ({type(exc).__name__})"
        if 200 <= response.status_code < 300:
            # Imported here: the buttons module builds on this state.
            from libs.messengers.telegram.emulator_buttons import webhook_reply

            webhook_reply(self, bot, response.content)  # a method given as the answer runs
            return response.status_code, None
        return response.status_code, f"Wrong response from the webhook: {response.status_code} {response.reason_phrase}"

    async def aclose(self) -> None:
        """Stop delivery workers (and the HTTP client when the state made it)."""
        workers = [b.worker for b in self._bots.values() if b.worker is not None and not b.worker.done()]
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        for bot in self._bots.values():
            bot.worker = None
            for pending in bot.queue:
                self._finish(pending, None, "the emulator stopped")
        if self._own_http:
            await self._http.aclose()
        self.files.close()
