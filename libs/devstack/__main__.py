"""`make run`: the whole bridge on this machine, in sandbox mode unless Kommo credentials are set."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading

from libs.config import load_settings
from libs.devstack.embedded import EmbeddedNats, EmbeddedPostgres
from libs.devstack.stack import Stack

NEXT_STEPS = """
  Kommo Bridge is running (sandbox: Kommo and Telegram are the built-in emulators).

    gateway         {gateway}
    Telegram bot    @{bot} (emulated)     Kommo account {account} (emulated)

  Try it, in another terminal:

    .venv/bin/bridgectl sandbox client "Hello, is my order ready?"     # a client writes to the bot
    .venv/bin/bridgectl sandbox show                                   # ... and it is in the Kommo chat
    .venv/bin/bridgectl sandbox manager "Yes, it ships today!"          # a manager answers in Kommo
    .venv/bin/bridgectl sandbox show                                   # ... and the client got it
    .venv/bin/bridgectl connections list                               # channels and their state

  Ctrl-C stops everything. Data stays in {data}.
"""


def main() -> None:
    settings = load_settings()
    data_dir = settings.data_dir.resolve()
    postgres = None if settings.database_url else EmbeddedPostgres(data_dir / "postgres")
    nats = None if settings.nats_url else EmbeddedNats(data_dir / "nats")
    database_url = settings.database_url or (postgres.database_url("bridge") if postgres else "")
    nats_url = settings.nats_url or (nats.url if nats else "")
    stack = Stack(data_dir, database_url, nats_url, echo=True, gateway_port=settings.gateway_port)
    stopped = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stack.start()
        if stack.sandbox:
            channel = asyncio.run(stack.connect_sandbox())
            print(
                NEXT_STEPS.format(
                    gateway=stack.public_url, bot=channel.bot_username, account=channel.account_id, data=data_dir
                ),
                flush=True,
            )
        else:
            print(f"\n  Kommo Bridge is running; gateway on {stack.public_url}. Ctrl-C stops it.\n", flush=True)
        while not stopped.wait(1):
            dead = [name for name, process in stack.processes.items() if not process.running]
            if dead:
                print(f"  {', '.join(dead)} exited; stopping (logs in {data_dir / 'logs'})", file=sys.stderr)
                break
    finally:
        stack.stop()
        if nats:
            nats.stop()
        if postgres:
            postgres.stop()


if __name__ == "__main__":
    main()
