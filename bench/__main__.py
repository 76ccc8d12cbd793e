"""Measure the bridge end to end, every service a process, against the emulators (flood limits off,
so the figures are the bridge's own and not Telegram's).

- inbound: clients write to the bot (each client in sequence, clients at once, like Telegram's
  concurrent webhook deliveries); latency = gateway POST → message stored at the Kommo emulator.
- outbound: managers answer in every conversation at once (the Kommo emulator signs and posts each
  hook); latency = hook sent → message accepted by the Telegram emulator.
- gateway: webhooks/s the gateway answers (verify + publish + PubAck) beside a bare Starlette
  endpoint, same client, same run.
- whatsapp (bench/whatsapp.py, skipped with BENCH_WHATSAPP=0): managers' messages to WhatsApp clients
  through one number, the emulator keeping Meta's 80 messages/s and pair rate, the bridge pacing itself.
- media (bench/media.py, skipped with BENCH_MEDIA=0): a 100 MB client file into Kommo through the
  gateway's signed link, with the services' peak resident memory during the transfer; then
  (bench/media_outbound.py) a 100 MB manager file streamed from Kommo's URL to Telegram, measured alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil

from bench.media import report as media_report
from bench.media import run_media
from bench.media_outbound import report as media_outbound_report
from bench.media_outbound import run_media_outbound
from bench.whatsapp import report as whatsapp_report
from bench.whatsapp import run_whatsapp
from libs.devstack.embedded import EmbeddedNats, EmbeddedPostgres, free_port, wait_for_port
from libs.devstack.stack import Stack
from tests.e2e.sandbox import Sandbox

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "40"))
PER_CLIENT = int(os.environ.get("BENCH_PER_CLIENT", "25"))
GATEWAY_REQUESTS = int(os.environ.get("BENCH_GATEWAY_REQUESTS", "3000"))
MEDIA = os.environ.get("BENCH_MEDIA", "1") != "0"
WHATSAPP = os.environ.get("BENCH_WHATSAPP", "1") != "0"
CONCURRENCY = 40  # Telegram's default max_connections


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def update(update_id: int, user_id: int, text: str) -> bytes:
    return json.dumps(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": int(time.time()),
                "chat": {"id": user_id, "type": "private", "first_name": "Bench"},
                "from": {"id": user_id, "is_bot": False, "first_name": "Bench", "username": f"bench_{user_id}"},
                "text": text,
            },
        }
    ).encode()


async def wait_count(fetch: Any, expected: int, limit_s: float = 600) -> list[dict[str, Any]]:
    deadline = time.monotonic() + limit_s
    while True:
        items: list[dict[str, Any]] = await fetch()
        if len(items) >= expected or time.monotonic() > deadline:
            return items
        await asyncio.sleep(0.2)


async def warm_up(sandbox: Sandbox) -> None:
    """Each client starts its chat through the Telegram emulator, which then knows the chat (a bot can
    only message users who wrote to it); measured traffic then goes straight to the gateway with
    Telegram's concurrency."""
    for index in range(CLIENTS):
        await sandbox.client_writes(10_000 + index, "/start")
    await wait_count(sandbox.kommo_messages, CLIENTS)


async def inbound(sandbox: Sandbox, http: httpx.AsyncClient, secret: str) -> dict[str, float]:
    url = f"{sandbox.stack.public_url}/webhooks/telegram/{sandbox.channel.connection_id}"
    sent_at: dict[str, float] = {}
    already = len(await sandbox.kommo_messages())

    async def client(index: int) -> None:
        user_id = 10_000 + index
        for n in range(PER_CLIENT):
            text = f"in {user_id} {n}"
            sent_at[text] = time.time()
            response = await http.post(
                url,
                content=update(10_000_000 + index * 1000 + n, user_id, text),
                headers={"X-Telegram-Bot-Api-Secret-Token": secret},
            )
            response.raise_for_status()

    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    messages = (await wait_count(sandbox.kommo_messages, already + CLIENTS * PER_CLIENT))[already:]
    latencies = [m["received_at"] - sent_at[m["message"]["text"]] for m in messages]
    span = max(m["received_at"] for m in messages) - min(sent_at.values())
    return {"count": len(messages), "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
            "rate": len(messages) / span}  # fmt: skip


async def outbound(sandbox: Sandbox) -> dict[str, float]:
    chats = await sandbox.kommo_chats()
    sent_at: dict[str, float] = {}
    already = len(await sandbox.telegram_sent())

    async def conversation(chat: dict[str, Any]) -> None:
        for n in range(PER_CLIENT):
            text = f"out {chat['conversation_id']} {n}"
            sent_at[text] = time.time()
            hook = await sandbox.manager_writes(chat["conversation_id"], text)
            if hook["status_code"] != 200:
                why = f"{hook['error']}, {hook['elapsed_s']:.1f} s"
                raise RuntimeError(f"gateway answered {hook['status_code']} to a Kommo hook ({why})")

    await asyncio.gather(*(conversation(chat) for chat in chats))
    sent = (await wait_count(sandbox.telegram_sent, already + len(chats) * PER_CLIENT))[already:]
    latencies = [m["at"] - sent_at[m["message"]["text"]] for m in sent]
    span = max(m["at"] for m in sent) - min(sent_at.values())
    return {"count": len(sent), "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
            "rate": len(sent) / span}  # fmt: skip


async def unloaded(sandbox: Sandbox, http: httpx.AsyncClient, secret: str, count: int = 50) -> dict[str, float]:
    """One message at a time, each awaited on the far side before the next: the latency of the
    pipeline itself, without queueing."""
    url = f"{sandbox.stack.public_url}/webhooks/telegram/{sandbox.channel.connection_id}"
    user_id = 10_000  # a warmed-up client
    conversation = await sandbox.conversation_of(user_id)
    inbound_ms: list[float] = []
    outbound_ms: list[float] = []
    for n in range(count):
        before = len(await sandbox.kommo_messages())
        started = time.time()
        body = update(20_000_000 + n, user_id, f"solo in {n}")
        (await http.post(url, content=body, headers={"X-Telegram-Bot-Api-Secret-Token": secret})).raise_for_status()
        arrived = await wait_count(sandbox.kommo_messages, before + 1)
        inbound_ms.append((arrived[-1]["received_at"] - started) * 1000)

        before = len(await sandbox.telegram_sent())
        started = time.time()
        await sandbox.manager_writes(conversation, f"solo out {n}")
        sent = await wait_count(sandbox.telegram_sent, before + 1)
        outbound_ms.append((sent[-1]["at"] - started) * 1000)
    return {
        "in_p50": percentile(inbound_ms, 0.5),
        "in_p99": percentile(inbound_ms, 0.99),
        "out_p50": percentile(outbound_ms, 0.5),
        "out_p99": percentile(outbound_ms, 0.99),
    }


async def hammer(url: str, bodies: list[bytes], headers: dict[str, str]) -> float:
    """Requests per second answered 2xx, with CONCURRENCY requests in flight. aiohttp's client, as
    httpx's own overhead (~1k requests/s here) would hide the server's speed."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with session.post(url, data=body, headers=headers) as response:
                    response.raise_for_status()
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return len(bodies) / (time.perf_counter() - started)


def rss_mib(stack: Stack) -> dict[str, float]:
    out = {}
    for name, process in stack.processes.items():
        if process.pid:
            with contextlib.suppress(psutil.NoSuchProcess):
                out[name] = psutil.Process(process.pid).memory_info().rss / 2**20
    return out


async def run(stack: Stack, bare_port: int) -> dict[str, Any]:
    channel = await stack.connect_sandbox()
    limits = httpx.Limits(max_connections=CONCURRENCY * 2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        sandbox = Sandbox(stack, channel, http)
        secret = await sandbox.webhook_secret()
        await warm_up(sandbox)
        results: dict[str, Any] = {"unloaded": await unloaded(sandbox, http, secret)}
        results["inbound"] = await inbound(sandbox, http, secret)
        results["outbound"] = await outbound(sandbox)

        results["rss_mib"] = rss_mib(stack)
        # The gateway alone: consumers stopped (their work waits in JetStream), so the two servers
        # compared here have the machine to themselves in turn.
        for name in ("router", "kommo_sender", "messenger_sender"):
            await asyncio.to_thread(stack.processes[name].stop)
        bodies = [update(900_000 + i, 90_000 + i % 500, f"gw {i}") for i in range(GATEWAY_REQUESTS)]
        results["bare_starlette_rps"] = await hammer(f"http://127.0.0.1:{bare_port}/hook", bodies, {})
        gateway_url = f"{stack.public_url}/webhooks/telegram/{channel.connection_id}"
        results["gateway_rps"] = await hammer(gateway_url, bodies, {"X-Telegram-Bot-Api-Secret-Token": secret})
    return results


def report(results: dict[str, Any]) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        f"Machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, {cpu}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"Command: make bench (BENCH_CLIENTS={CLIENTS} BENCH_PER_CLIENT={PER_CLIENT} "
        f"BENCH_GATEWAY_REQUESTS={GATEWAY_REQUESTS})",
        "",
        "| one message at a time (no queueing) | p50 latency | p99 latency |",
        "|---|---|---|",
        f"| client → Kommo | {results['unloaded']['in_p50']:.0f} ms | {results['unloaded']['in_p99']:.0f} ms |",
        f"| Kommo → client | {results['unloaded']['out_p50']:.0f} ms | {results['unloaded']['out_p99']:.0f} ms |",
        "",
        f"| {CLIENTS} conversations at once, {PER_CLIENT} messages each | messages | p50 latency | p99 latency "
        "| sustained |",
        "|---|---|---|---|---|",
    ]
    for direction, label in (("inbound", "client → Kommo"), ("outbound", "Kommo → client")):
        r = results[direction]
        lines.append(
            f"| {label} | {int(r['count'])} | {r['p50'] * 1000:.0f} ms | {r['p99'] * 1000:.0f} ms "
            f"| {r['rate']:.0f} msg/s |"
        )
    lines += [
        "",
        "| webhook endpoint | requests/s (concurrency 40) |",
        "|---|---|",
        f"| gateway `/webhooks/telegram/…` (verify, parse, publish, PubAck) | {results['gateway_rps']:.0f} |",
        f"| bare Starlette endpoint, same uvicorn and client | {results['bare_starlette_rps']:.0f} |",
        "",
        "| process | resident memory after the message phases |",
        "|---|---|",
        *(f"| {name} | {mib:.0f} MiB |" for name, mib in results["rss_mib"].items()),
    ]
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
        data = Path(tmp)
        postgres = EmbeddedPostgres(data / "postgres")
        nats = EmbeddedNats(data / "nats")
        stack = Stack(data / "stack", postgres.database_url("bench"), nats.url, partitions=16, telegram_limits=False)
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-m", "bench.bare_starlette", str(bare_port)])
        try:
            print("starting the stack…", flush=True)
            stack.start()
            wait_for_port(bare_port)
            print(f"running: {CLIENTS} clients × {PER_CLIENT} messages each way, then the gateway…", flush=True)
            results = asyncio.run(run(stack, bare_port))
            stack.stop()
            if WHATSAPP:
                print("whatsapp: managers' messages through one number at Meta's limits…", flush=True)
                results["whatsapp"] = run_whatsapp(data, postgres, nats)
            if MEDIA:
                print("media: a client file through the gateway's signed link…", flush=True)
                results["media"] = run_media(data, postgres, nats)
                print("media: a manager file streamed to Telegram…", flush=True)
                results["media_outbound"] = run_media_outbound(data, postgres, nats)
        finally:
            bare.terminate()
            bare.wait()
            stack.stop()
            nats.stop()
            postgres.stop()
    print()
    print(report(results))
    if "whatsapp" in results:
        print()
        print(whatsapp_report(results["whatsapp"]))
    if "media" in results:
        print()
        print(media_report(results["media"]))
    if "media_outbound" in results:
        print()
        print(media_outbound_report(results["media_outbound"]))


if __name__ == "__main__":
    main()
