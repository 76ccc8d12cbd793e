"""bridgectl: connect accounts and channels, list them, and drive the local sandbox."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import events_pb2
from kommo_bridge.router.v1 import router_pb2, router_pb2_grpc

from libs.config import load_settings
from libs.errors import BridgeError
from libs.messengers.registry import adapter_named
from libs.rpc import call, open_channel
from libs.status_texts import LANGUAGES


@dataclass
class Target:
    auth_addr: str
    router_addr: str
    token: str
    sandbox: dict[str, Any]


def resolve_target() -> Target:
    """Addresses from the environment, or from the running `make run` sandbox in the data folder."""
    settings = load_settings()
    data_dir = settings.data_dir
    sandbox_file = data_dir / "sandbox.json"
    sandbox = json.loads(sandbox_file.read_text()) if sandbox_file.exists() else {}
    token = settings.service_token.get_secret_value()
    token_file = data_dir / "secrets" / "service_token"
    if not token and token_file.exists():
        token = token_file.read_text().strip()
    if not token:
        raise SystemExit("bridgectl: set BRIDGE_SERVICE_TOKEN (the service credential) to reach the bridge")

    auth_addr = os.environ.get("BRIDGE_AUTH_GRPC_ADDR") or sandbox.get("auth_addr") or settings.auth_grpc_addr
    router_addr = os.environ.get("BRIDGE_ROUTER_GRPC_ADDR") or sandbox.get("router_addr") or settings.router_grpc_addr
    return Target(auth_addr, router_addr, token, sandbox)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "never"


async def accounts_connect(target: Target, args: argparse.Namespace) -> None:
    channel = open_channel(target.auth_addr, target.token)
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    item = await call(auth.ConnectAccount, auth_pb2.ConnectAccountRequest(account_id=args.account_id, title=args.title))
    await channel.close(None)
    print(f"connected Kommo account {item.account_id} (scope {item.scope_id})")


async def accounts_list(target: Target, args: argparse.Namespace) -> None:
    channel = open_channel(target.auth_addr, target.token)
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    response = await call(auth.ListInstallations, auth_pb2.ListInstallationsRequest())
    await channel.close(None)
    rows = [
        (
            i.account_id,
            i.domain or "-",
            i.state,
            i.token_kind or "-",
            _when(i.token_expires_at_ms) if i.token_expires_at_ms else "-",
            _when(i.connected_at_ms),
            i.language or "en",
        )
        for i in response.installations
    ]
    print_table(["account", "domain", "state", "tokens", "token expires", "connected", "language"], rows)
    for item in response.installations:
        if item.state == "needs_reauth":
            print(f"\n{item.domain or item.account_id}: Kommo refused the token refresh ({item.last_error}).")
            print("  An admin must install the integration again: bridgectl accounts install-link")


async def accounts_install_link(target: Target, args: argparse.Namespace) -> None:
    channel = open_channel(target.auth_addr, target.token)
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    link = await call(auth.CreateInstallLink, auth_pb2.CreateInstallLinkRequest())
    await channel.close(None)
    print("Open this link as an admin of the Kommo account (valid 30 minutes, once):")
    print(f"  {link.url}")


async def accounts_connect_token(target: Target, args: argparse.Namespace) -> None:
    token = _read_secret(args.token_file, "long-lived token")
    channel = open_channel(target.auth_addr, target.token)
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    item = await call(
        auth.InstallWithToken, auth_pb2.InstallWithTokenRequest(domain=args.domain, access_token=token), deadline_s=30
    )
    await channel.close(None)
    print(f"installed into {item.domain} (account {item.account_id}, scope {item.scope_id})")


async def accounts_language(target: Target, args: argparse.Namespace) -> None:
    channel = open_channel(target.auth_addr, target.token)
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    request = auth_pb2.SetAccountLanguageRequest(account=args.account, language=args.language)
    item = await call(auth.SetAccountLanguage, request)
    await channel.close(None)
    print(f"{item.domain or item.account_id}: delivery statuses are now written in {item.language}")


async def keys_rotate(target: Target, args: argparse.Namespace) -> None:
    channel = open_channel(target.auth_addr, target.token)
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    result = await call(auth.RotateKeys, auth_pb2.RotateKeysRequest(), deadline_s=600)
    await channel.close(None)
    print(f"re-encrypted {result.reencrypted} secrets under key {result.key_id}")
    if result.remaining:
        print(f"{result.remaining} secrets were busy and are still under an older key: run it again")
        raise SystemExit(1)
    print("nothing is left under older keys: they can now be removed from BRIDGE_MASTER_KEYS")


async def keys_generate(target: Target, args: argparse.Namespace) -> None:
    from libs.crypto import generate_key_spec

    print(generate_key_spec(args.key_id))


def _read_secret(path: str | None, what: str) -> str:
    """From a file, or asked for without echo: never from the command line (shell history, ps)."""
    return Path(path).read_text().strip() if path else getpass.getpass(f"{what}: ")


def _channel_credentials(args: argparse.Namespace) -> tuple[str, str]:
    """The channel's credential as ConnectChannel takes it, and the platform app's secret if it has one.
    WhatsApp: `<phone number id>:<business account id>:<access token>` and the Meta app secret."""
    if args.platform != "whatsapp":
        return _read_secret(args.token_file, f"{args.platform} token"), ""
    if not args.phone_number_id or not args.waba_id:
        raise SystemExit("whatsapp needs --phone-number-id and --waba-id (WhatsApp Manager > API setup)")
    token = _read_secret(args.token_file, "whatsapp access token")
    app_secret = _read_secret(args.app_secret_file, "Meta app secret")
    return f"{args.phone_number_id}:{args.waba_id}:{token}", app_secret


async def connections_connect(target: Target, args: argparse.Namespace) -> None:
    adapter = adapter_named(args.platform)
    token, app_secret = _channel_credentials(args)
    channel = open_channel(target.router_addr, target.token)
    router = router_pb2_grpc.RouterServiceStub(channel)
    request = router_pb2.ConnectChannelRequest(
        account_id=args.account,
        platform=adapter.platform,
        token=token,
        source_external_id=args.source or "",
        app_secret=app_secret,
    )
    connection = await call(router.ConnectChannel, request, deadline_s=30)
    await channel.close(None)
    print(f"connected {connection.display_name} ({args.platform}) as {connection.connection_id}")
    print(f"  webhook: {connection.webhook_url}\n  source:  {connection.source_external_id}")


async def connections_list(target: Target, args: argparse.Namespace) -> None:
    channel = open_channel(target.router_addr, target.token)
    router = router_pb2_grpc.RouterServiceStub(channel)
    response = await call(router.ListConnections, router_pb2.ListConnectionsRequest(account_id=args.account or ""))
    await channel.close(None)
    rows = [
        (
            c.connection_id,
            _platform_label(c.platform),
            c.display_name,
            c.account_id,
            router_pb2.ConnectionState.Name(c.state).removeprefix("CONNECTION_STATE_").lower(),
            str(c.conversations),
            _when(c.last_message_at_ms),
        )
        for c in response.connections
    ]
    print_table(["connection", "platform", "name", "account", "state", "chats", "last message"], rows)


async def connections_pause(target: Target, args: argparse.Namespace) -> None:
    channel = open_channel(target.router_addr, target.token)
    router = router_pb2_grpc.RouterServiceStub(channel)
    if args.command == "pause":
        connection = await call(router.PauseChannel, router_pb2.PauseChannelRequest(connection_id=args.connection_id))
        print(f"paused {connection.display_name}: client messages are held (in order) until it is resumed,")
        print("  and managers' replies are refused with a clear status in Kommo")
    else:
        request = router_pb2.ResumeChannelRequest(connection_id=args.connection_id)
        connection = await call(router.ResumeChannel, request)
        print(f"resumed {connection.display_name}: {connection.held_messages} held messages are on their way")
    await channel.close(None)


WEBHOOK_LABELS = {
    router_pb2.WEBHOOK_STATUS_REGISTERED: "registered",
    router_pb2.WEBHOOK_STATUS_NOT_SET: "NOT SET",
    router_pb2.WEBHOOK_STATUS_ELSEWHERE: "ELSEWHERE",
}


async def connections_health(target: Target, args: argparse.Namespace) -> None:
    channel = open_channel(target.router_addr, target.token)
    router = router_pb2_grpc.RouterServiceStub(channel)
    listed = await call(router.ListConnections, router_pb2.ListConnectionsRequest(account_id=args.account or ""))
    names = {c.connection_id: c for c in listed.connections}
    accounts = sorted({c.account_id for c in listed.connections if c.state != router_pb2.CONNECTION_STATE_DISCONNECTED})
    found: list[router_pb2.ChannelHealth] = []
    for account in accounts:
        request = router_pb2.ListChannelHealthRequest(account_id=account, fresh=True)
        found.extend((await call(router.ListChannelHealth, request, deadline_s=30)).channels)
    await channel.close(None)
    rows = []
    for health in found:
        connection = names[health.connection_id]
        if health.token_rejected:
            webhook = "TOKEN REJECTED"
        elif health.unreachable:
            webhook = "unknown"
        else:
            webhook = WEBHOOK_LABELS.get(health.webhook, "unknown")
        error = f"{_when(health.last_error_at_ms)} {health.last_error_message}" if health.last_error_at_ms else "-"
        rows.append(
            (
                health.connection_id,
                connection.display_name,
                router_pb2.ConnectionState.Name(connection.state).removeprefix("CONNECTION_STATE_").lower(),
                webhook,
                str(health.pending_updates),
                str(connection.held_messages),
                _when(connection.last_message_at_ms),
                error,
            )
        )
    print_table(["connection", "name", "state", "webhook", "pending", "held", "last message", "last error"], rows)
    for health in found:
        if health.token_rejected:
            print(f"\n{names[health.connection_id].display_name}: {health.reason}. Give it the bot's new token in")
            print("  the settings window (Fix bot token), or connect it again: bridgectl connections connect")
        elif health.unreachable:
            print(f"\n{names[health.connection_id].display_name}: could not ask the platform ({health.reason})")


async def connections_disconnect(target: Target, args: argparse.Namespace) -> None:
    channel = open_channel(target.router_addr, target.token)
    router = router_pb2_grpc.RouterServiceStub(channel)
    await call(router.DisconnectChannel, router_pb2.DisconnectChannelRequest(connection_id=args.connection_id))
    await channel.close(None)
    print(f"disconnected {args.connection_id}")


CONTACT_RULE_CHOICES = {
    "create": events_pb2.CONTACT_RULE_CREATE,
    "link_existing": events_pb2.CONTACT_RULE_LINK_EXISTING,
}


def settings_from_args(args: argparse.Namespace) -> router_pb2.ChannelSettings:
    """Only the options given on the command line: the rest keep their value."""
    settings = router_pb2.ChannelSettings()
    if args.source_name is not None:
        settings.source_name = args.source_name
    if args.pipeline is not None:
        settings.pipeline_id = args.pipeline
    if args.contact_rule is not None:
        settings.contact_rule = CONTACT_RULE_CHOICES[args.contact_rule]
    if args.update_profiles is not None:
        settings.update_profiles = args.update_profiles == "yes"
    if args.robot_label is not None:
        settings.robot_label = args.robot_label
    return settings


def print_settings(connection: router_pb2.Connection) -> None:
    rules = {value: name for name, value in CONTACT_RULE_CHOICES.items()}
    settings = connection.settings
    print(f"{connection.display_name} ({connection.connection_id})")
    print(f"  source:          {settings.source_name} (external_id {connection.source_external_id})")
    print(f"  pipeline:        {settings.pipeline_id or 'main'}")
    print(f"  contact rule:    {rules.get(settings.contact_rule, 'create')}")
    print(f"  update profiles: {'yes' if settings.update_profiles else 'no'}")
    print(f"  robot label:     {settings.robot_label!r}")
    print(f"  conversations:   {connection.conversations} ({connection.closed_conversations} closed by the client)")


async def connections_settings(target: Target, args: argparse.Namespace) -> None:
    channel = open_channel(target.router_addr, target.token)
    router = router_pb2_grpc.RouterServiceStub(channel)
    settings = settings_from_args(args)
    if settings.ListFields():
        request = router_pb2.UpdateChannelSettingsRequest(connection_id=args.connection_id, settings=settings)
        connection = await call(router.UpdateChannelSettings, request)
    else:
        connection = await call(router.GetConnection, router_pb2.GetConnectionRequest(connection_id=args.connection_id))
    await channel.close(None)
    print_settings(connection)


def _platform_label(platform: int) -> str:
    from kommo_bridge.events.v1 import content_pb2

    return content_pb2.Platform.Name(platform).removeprefix("PLATFORM_").lower()  # type: ignore[arg-type]


def _sandbox(target: Target) -> dict[str, Any]:
    if not target.sandbox:
        raise SystemExit("bridgectl: no running sandbox found (start one with `make run`)")
    return target.sandbox


async def sandbox_client(target: Target, args: argparse.Namespace) -> None:
    sandbox = _sandbox(target)
    user = {"id": args.user_id, "first_name": args.name.split()[0], "username": args.username}
    if len(args.name.split()) > 1:
        user["last_name"] = " ".join(args.name.split()[1:])
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"{sandbox['telegram_url']}/_emulator/clients/messages",
            json={"bot_id": sandbox["bot_id"], "user": user, "text": args.text},
        )
    response.raise_for_status()
    result = response.json()
    print(f"client {args.name} wrote to @{sandbox['bot_username']}; gateway answered {result.get('status')}")


async def sandbox_manager(target: Target, args: argparse.Namespace) -> None:
    sandbox = _sandbox(target)
    async with httpx.AsyncClient(timeout=10) as http:
        conversation_id = args.conversation
        if not conversation_id:
            chats = (await http.get(f"{sandbox['kommo_url']}/_emulator/chats")).json().get("chats", [])
            if not chats:
                raise SystemExit("bridgectl: no Kommo chat yet; send a client message first")
            conversation_id = chats[-1]["conversation_id"]
        response = await http.post(
            f"{sandbox['kommo_url']}/_emulator/manager_messages",
            json={"scope_id": sandbox["scope_id"], "conversation_id": conversation_id, "text": args.text},
        )
    response.raise_for_status()
    print(
        f"manager answered in Kommo chat {conversation_id}; gateway answered {response.json()['hook']['status_code']}"
    )


async def sandbox_show(target: Target, args: argparse.Namespace) -> None:
    sandbox = _sandbox(target)
    async with httpx.AsyncClient(timeout=10) as http:
        messages = (await http.get(f"{sandbox['kommo_url']}/_emulator/messages")).json()["messages"]
        statuses = (await http.get(f"{sandbox['kommo_url']}/_emulator/statuses")).json()["statuses"]
        sent = (
            await http.get(f"{sandbox['telegram_url']}/_emulator/sent", params={"bot_id": sandbox["bot_id"]})
        ).json()
    labels = {1: "delivered", 2: "read", -1: "error"}
    print("Kommo chat (what managers see):")
    for item in messages[-args.last :]:
        text = item["message"].get("text", "") or f"[{item['message'].get('type', 'message')}]"
        if item["direction"] == "manager":
            history = statuses.get(item["kommo_msgid"], [])
            state = labels.get(history[-1]["status"], "?") if history else "sent"
            print(f"  Manager: {text}   ({state})")
        else:
            print(f"  {item['sender'].get('name', 'Client')}: {text}")
    print(f"Telegram (what @{sandbox['bot_username']} sent to clients):")
    for item in sent.get("messages", [])[-args.last :]:
        print(f"  to {item['chat_id']}: {item['message'].get('text', '')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridgectl", description="Operate Kommo Bridge.")
    groups = parser.add_subparsers(dest="group", required=True)

    accounts = groups.add_parser("accounts", help="Kommo accounts the chat channel is connected to").add_subparsers(
        dest="command", required=True
    )
    connect = accounts.add_parser("connect", help="connect the chat channel to a Kommo account (by amojo id)")
    connect.add_argument("account_id")
    connect.add_argument("--title", default="Kommo Bridge")
    connect.set_defaults(run=accounts_connect)
    accounts.add_parser("list", help="list connected accounts and their token state").set_defaults(run=accounts_list)
    accounts.add_parser("install-link", help="a one-time OAuth install link for an admin").set_defaults(
        run=accounts_install_link
    )
    with_token = accounts.add_parser("connect-token", help="install a private integration with a long-lived token")
    with_token.add_argument("--domain", required=True, help="the account's domain, e.g. shop.kommo.com")
    with_token.add_argument("--token-file", help="file holding the token (asked for when omitted)")
    with_token.set_defaults(run=accounts_connect_token)
    language = accounts.add_parser(
        "language", help="the language managers read delivery statuses in (the settings window stops changing it)"
    )
    language.add_argument("account", help="the account's amojo id or Kommo domain")
    language.add_argument("language", help=f"one of {', '.join(LANGUAGES)}")
    language.set_defaults(run=accounts_language)

    keys = groups.add_parser("keys", help="the master keys that encrypt every secret").add_subparsers(
        dest="command", required=True
    )
    keys.add_parser(
        "rotate", help="re-encrypt every secret under the newest key in BRIDGE_MASTER_KEYS (while running)"
    ).set_defaults(run=keys_rotate)
    generate = keys.add_parser("generate", help="print a new key to put first in BRIDGE_MASTER_KEYS")
    generate.add_argument("key_id")
    generate.set_defaults(run=keys_generate)

    connections = groups.add_parser("connections", help="messenger channels").add_subparsers(
        dest="command", required=True
    )
    add = connections.add_parser("connect", help="connect a messenger channel (a Telegram bot, a WhatsApp number)")
    add.add_argument("platform", choices=["telegram", "whatsapp"])
    add.add_argument("--account", required=True, help="the Kommo account's amojo id")
    add.add_argument("--token-file", help="file holding the bot / access token (asked for when omitted)")
    add.add_argument("--phone-number-id", help="whatsapp: the business number's phone-number id")
    add.add_argument("--waba-id", help="whatsapp: its WhatsApp Business Account id")
    add.add_argument("--app-secret-file", help="whatsapp: file holding the Meta app secret (asked for when omitted)")
    add.add_argument("--source", help="Kommo source external_id (default: derived from the bot)")
    add.set_defaults(run=connections_connect)
    listing = connections.add_parser("list", help="list channels with their state")
    listing.add_argument("--account", help="only this Kommo account")
    listing.set_defaults(run=connections_list)
    for command, text in (
        ("pause", "hold a channel's client messages (in order, nothing lost) and refuse replies, until resumed"),
        ("resume", "carry a paused channel's messages again, the held ones first, in order"),
    ):
        pausing = connections.add_parser(command, help=text)
        pausing.add_argument("connection_id")
        pausing.set_defaults(run=connections_pause)
    health = connections.add_parser(
        "health", help="ask the platforms about each channel: webhook, pending updates, last error, token"
    )
    health.add_argument("--account", help="only this Kommo account")
    health.set_defaults(run=connections_health)
    remove = connections.add_parser("disconnect", help="stop carrying a channel's messages")
    remove.add_argument("connection_id")
    remove.set_defaults(run=connections_disconnect)
    configure = connections.add_parser(
        "settings", help="show or change how a channel's chats land in Kommo (source, contacts, robot label)"
    )
    configure.add_argument("connection_id")
    configure.add_argument("--source-name", help="the Kommo source's name")
    configure.add_argument("--pipeline", type=int, help="pipeline id for incoming leads (0 = the main pipeline)")
    configure.add_argument(
        "--contact-rule",
        choices=sorted(CONTACT_RULE_CHOICES),
        help="create a contact per new client, or link to an existing one with the same phone / e-mail",
    )
    configure.add_argument("--update-profiles", choices=["yes", "no"], help="carry profile changes to the contact")
    configure.add_argument("--robot-label", help="prefix clients see on messages from Kommo's bot ('' for none)")
    configure.set_defaults(run=connections_settings)

    sandbox = groups.add_parser("sandbox", help="play both sides of the local sandbox").add_subparsers(
        dest="command", required=True
    )
    client = sandbox.add_parser("client", help="a client writes to the sandbox bot")
    client.add_argument("text")
    client.add_argument("--name", default="Ann Client")
    client.add_argument("--username", default="ann_client")
    client.add_argument("--user-id", type=int, default=777000001)
    client.set_defaults(run=sandbox_client)
    manager = sandbox.add_parser("manager", help="a manager answers in the Kommo chat")
    manager.add_argument("text")
    manager.add_argument("--conversation", help="our conversation id (default: the newest chat)")
    manager.set_defaults(run=sandbox_manager)
    show = sandbox.add_parser("show", help="what each side has received")
    show.add_argument("--last", type=int, default=10)
    show.set_defaults(run=sandbox_show)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run: Callable[[Target, argparse.Namespace], Coroutine[Any, Any, None]] = args.run
    try:
        asyncio.run(run(resolve_target(), args))
    except BridgeError as exc:
        print(f"bridgectl: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except httpx.HTTPError as exc:
        print(f"bridgectl: the sandbox did not answer ({type(exc).__name__})", file=sys.stderr)
        raise SystemExit(1) from None
