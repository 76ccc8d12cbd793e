"""List, replay or drop the bridge's dead letters (the BRIDGE_DEAD_LETTERS stream). Needs only nats-py,
so it runs inside any bridge pod, no shell needed (docs/operations.md, "Replay dead letters"):

    kubectl exec -i deploy/<release>-kommo-bridge-router -- python3 - list < deploy/tools/dead_letters.py
    kubectl exec -i deploy/<release>-kommo-bridge-router -- python3 - replay 12 15 < deploy/tools/dead_letters.py
    kubectl exec -i deploy/<release>-kommo-bridge-router -- python3 - drop --all < deploy/tools/dead_letters.py

Replay publishes the message again to the partition subject it failed on, with its original headers
(trace context, ordering key) and a `Nats-Msg-Id` of `replay:<dead-letter sequence>`, so running the
same replay twice within JetStream's duplicate window delivers it once; the consumers' own idempotency
covers the rest. Only after JetStream acknowledged the copy is the dead letter deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import nats
from nats.js.errors import NotFoundError

DEAD_LETTERS = "BRIDGE_DEAD_LETTERS"
# Written by libs/bus/consumer.py when it dead-letters a message.
DEAD_HEADERS = ("Bridge-Dead-Stream", "Bridge-Dead-Subject", "Bridge-Dead-Consumer", "Bridge-Dead-Sequence")
REASON_HEADER = "Bridge-Dead-Reason"
MSG_ID_HEADER = "Nats-Msg-Id"
DONE = {"list": "listed", "replay": "replayed", "drop": "dropped"}


@dataclass
class DeadLetter:
    sequence: int
    stream: str
    subject: str
    consumer: str
    reason: str
    data: bytes
    headers: dict[str, str]

    def original_headers(self) -> dict[str, str]:
        """The headers the message had before it failed."""
        dead = {*DEAD_HEADERS, REASON_HEADER, MSG_ID_HEADER}
        return {key: value for key, value in self.headers.items() if key not in dead}


async def dead_letters(js: nats.js.JetStreamContext) -> AsyncIterator[DeadLetter]:
    info = await js.stream_info(DEAD_LETTERS)
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            message = await js.get_msg(DEAD_LETTERS, sequence)
        except NotFoundError:
            continue  # deleted (replayed or dropped) already
        headers = dict(message.headers or {})
        yield DeadLetter(
            sequence=sequence,
            stream=headers.get("Bridge-Dead-Stream", ""),
            subject=headers.get("Bridge-Dead-Subject", ""),
            consumer=headers.get("Bridge-Dead-Consumer", ""),
            reason=headers.get(REASON_HEADER, ""),
            data=message.data or b"",
            headers=headers,
        )


def _selected(letter: DeadLetter, args: argparse.Namespace) -> bool:
    if args.stream and letter.stream != args.stream:
        return False
    return bool(args.all or letter.sequence in args.sequences)


async def run(args: argparse.Namespace) -> int:
    nc = await nats.connect(args.nats_url.split(","), connect_timeout=5, max_reconnect_attempts=2)
    try:
        js = nc.jetstream()
        count = 0
        async for letter in dead_letters(js):
            if args.command == "list":
                if args.stream and letter.stream != args.stream:
                    continue
                origin = f"{letter.stream:<26} {letter.subject:<16} {letter.consumer:<28}"
                print(f"{letter.sequence:>8}  {origin} {letter.reason}")
            elif _selected(letter, args):
                if args.command == "replay":
                    if not (letter.stream and letter.subject):
                        print(f"{letter.sequence}: not a bridge dead letter (no origin headers); left as is")
                        continue
                    headers = {**letter.original_headers(), MSG_ID_HEADER: f"replay:{letter.sequence}"}
                    await js.publish(letter.subject, letter.data, stream=letter.stream, headers=headers)
                await js.delete_msg(DEAD_LETTERS, letter.sequence)
                print(f"{DONE[args.command]} {letter.sequence} ({letter.stream} {letter.subject})")
            else:
                continue
            count += 1
        print(f"{count} dead letters {DONE[args.command]}")
        return 0
    finally:
        await nc.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="List, replay or drop Kommo Bridge dead letters.")
    parser.add_argument("--nats-url", default=os.environ.get("BRIDGE_NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--stream", default="", help="only dead letters from this stream (e.g. BRIDGE_INBOUND)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="sequence, origin and reason of every dead letter")
    for name, help_text in (("replay", "publish again where they failed"), ("drop", "delete for good")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("sequences", nargs="*", type=int, help="dead-letter sequences (from list)")
        command.add_argument("--all", action="store_true", help="every dead letter (of --stream, if given)")
    args = parser.parse_args(argv)
    if args.command != "list" and not (args.all or args.sequences):
        parser.error(f"{args.command}: name the sequences, or --all")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
