"""One process hosting every platform emulator, each on its own port (so request paths are exactly
the platform's), for `make run`'s sandbox mode and the end-to-end tests."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Sequence

import uvicorn
from starlette.types import ASGIApp

from libs.kommo.emulator import CrmState, create_amojo_emulator
from libs.kommo.emulator.accounts import create_account_emulator
from libs.logs import configure_logging
from libs.messengers.telegram.emulator import create_telegram_emulator
from libs.messengers.telegram.flood import FloodLimits
from libs.messengers.whatsapp.emulator import create_whatsapp_emulator

log = logging.getLogger(__name__)


async def serve_all(apps: dict[str, tuple[ASGIApp, int]], host: str = "127.0.0.1") -> None:
    """Serve every app on `host`, each on its port, until they stop. Loopback by default; the chart's
    sandbox pod binds 0.0.0.0 so the bridge's other pods reach it through its Service."""
    servers = []
    for name, (app, port) in apps.items():
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        servers.append((name, server, asyncio.create_task(server.serve())))
    for name, server, task in servers:
        while not server.started:
            if task.done():
                await task
                raise RuntimeError(f"{name} emulator did not start")
            await asyncio.sleep(0.02)
    log.info("ready", extra={"emulators": json.dumps({name: port for name, (_, port) in apps.items()})})
    await asyncio.gather(*(task for _, _, task in servers))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Serve the Kommo, Telegram and WhatsApp emulators.")
    parser.add_argument("--host", default="127.0.0.1", help="address every emulator binds (default: loopback)")
    parser.add_argument("--kommo-port", type=int, required=True)
    parser.add_argument("--telegram-port", type=int, required=True)
    parser.add_argument("--channel-id", required=True)
    parser.add_argument("--channel-secret-file", required=True, help="file holding the chat channel secret")
    parser.add_argument("--channel-code", default="amo.ext.sandbox")
    parser.add_argument("--hook-url", required=True, help="the channel webhook URL, with :scope_id")
    parser.add_argument("--telegram-limits", choices=["on", "off"], default="on")
    parser.add_argument("--whatsapp-port", type=int, default=0, help="the WhatsApp Cloud API emulator (0: none)")
    parser.add_argument("--accounts-port", type=int, required=True, help="Kommo's account side (OAuth, REST)")
    parser.add_argument("--client-id", required=True, help="the integration's OAuth client id")
    parser.add_argument("--client-secret-file", required=True, help="file holding the integration's secret")
    parser.add_argument("--redirect-uri", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging("emulators")

    with open(args.channel_secret_file) as handle:
        channel_secret = handle.read().strip()
    crm = CrmState()  # one CRM: amojo's chats and messages make the leads the account REST API serves
    amojo_app, amojo = create_amojo_emulator(crm=crm)
    amojo.register_channel(args.channel_id, channel_secret, args.hook_url, code=args.channel_code)
    telegram_app, telegram = create_telegram_emulator()
    if args.telegram_limits == "off":
        telegram.flood.configure(FloodLimits(enabled=False))
    with open(args.client_secret_file) as handle:
        client_secret = handle.read().strip()
    accounts_app, accounts = create_account_emulator(crm=crm)
    accounts.register_integration(args.client_id, client_secret, args.redirect_uri)
    apps: dict[str, tuple[ASGIApp, int]] = {
        "kommo": (amojo_app, args.kommo_port),
        "kommo-accounts": (accounts_app, args.accounts_port),
        "telegram": (telegram_app, args.telegram_port),
    }
    if args.whatsapp_port:
        apps["whatsapp"] = (create_whatsapp_emulator().app, args.whatsapp_port)
    asyncio.run(serve_all(apps, host=args.host))


if __name__ == "__main__":
    main()
