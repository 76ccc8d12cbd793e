"""Managers' messages to WhatsApp clients through one business number, measured: every conversation at
once, the WhatsApp Cloud emulator keeping Meta's limits (80 messages/s per number, the pair rate), the
bridge pacing itself to them. Latency = Kommo hook sent → message accepted by the emulator; the figure
also says how many messages WhatsApp refused (with the pacing, none should be).

    python -m bench.whatsapp   (BENCH_CLIENTS / BENCH_PER_CLIENT as `make bench`; also run by it)
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from libs.devstack.embedded import EmbeddedNats, EmbeddedPostgres
from libs.devstack.stack import Stack
from tests.e2e.sandbox import Sandbox
from tests.e2e.whatsapp_side import connect_number
from tests.support import wait_for

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "40"))
PER_CLIENT = int(os.environ.get("BENCH_PER_CLIENT", "25"))
META_LIMITS = {"per_number_per_s": 80.0, "pair_per_s": 1 / 6, "pair_burst": 45, "enabled": True}
WAIT_S = 900.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(stack: Stack) -> dict[str, Any]:
    channel = await stack.connect_sandbox()
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=CLIENTS * 2)) as http:
        sandbox = Sandbox(stack, channel, http)
        whatsapp = await connect_number(sandbox, "Bench Shop WA", "15550009999")
        graph = stack.whatsapp_url
        (await http.put(f"{graph}/_emulator/limits", json=META_LIMITS)).raise_for_status()
        wa_ids = [f"4915559{index:05d}" for index in range(CLIENTS)]
        await asyncio.gather(*(whatsapp.client_writes(wa_id, "Hello") for wa_id in wa_ids))
        client_ids = {f"{whatsapp.connection_id}:{wa_id}" for wa_id in wa_ids}

        async def chats_exist() -> bool:
            return client_ids <= {c["client"].get("client_id", "") for c in await sandbox.kommo_chats()}

        await wait_for(chats_exist, timeout=120, what="every client's Kommo chat")
        conversations = {wa_id: await whatsapp.conversation_of(wa_id) for wa_id in wa_ids}
        sent_at: dict[str, float] = {}

        async def conversation(wa_id: str) -> None:
            for n in range(PER_CLIENT):
                text = f"{wa_id} {n}"
                sent_at[text] = time.time()
                hook = await sandbox.manager_writes(conversations[wa_id], text)
                if hook["status_code"] != 200:  # Kommo never retries a hook: the message would not come
                    raise RuntimeError(f"gateway answered {hook['status_code']} to a Kommo hook ({hook['error']})")

        await asyncio.gather(*(conversation(wa_id) for wa_id in wa_ids))
        number = whatsapp.business.phone_number_id

        async def sent() -> list[dict[str, Any]]:
            response = await http.get(f"{graph}/_emulator/sent", params={"phone_number_id": number})
            return [m for m in response.json()["messages"] if m["body"]["text"]["body"] in sent_at]

        total = CLIENTS * PER_CLIENT
        await wait_for(lambda: _count(sent(), total), timeout=WAIT_S, interval=0.5, what=f"{total} messages")
        messages = await sent()
        refused = (await http.get(f"{graph}/_emulator/limits")).json()["refused"].get(number, {})
    latencies = [m["at"] - sent_at[m["body"]["text"]["body"]] for m in messages]
    span = max(m["at"] for m in messages) - min(sent_at.values())
    return {
        "count": len(messages),
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "rate": len(messages) / span,
        "refused": sum(refused.values()),
    }


async def _count(found: Any, expected: int) -> bool:
    return len(await found) >= expected


def run_whatsapp(data: Path, postgres: EmbeddedPostgres, nats: EmbeddedNats) -> dict[str, Any]:
    """On a stack of its own (16 partitions, one replica of each service, as the main phases)."""
    stack = Stack(data / "whatsapp-stack", postgres.database_url("bench_whatsapp"), nats.url, partitions=16)
    try:
        stack.start()
        return asyncio.run(measure(stack))
    finally:
        stack.stop()


def report(results: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"| {CLIENTS} WhatsApp clients at once, {PER_CLIENT} messages each, one number (emulator at Meta's "
            "80/s and pair rate) | messages | p50 latency | p99 latency | sustained | refused by WhatsApp |",
            "|---|---|---|---|---|---|",
            f"| Kommo → WhatsApp | {results['count']} | {results['p50'] * 1000:.0f} ms | "
            f"{results['p99'] * 1000:.0f} ms | {results['rate']:.0f} msg/s | {results['refused']} |",
        ]
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bridge-bench-whatsapp-") as tmp:
        data = Path(tmp)
        postgres = EmbeddedPostgres(data / "postgres")
        nats = EmbeddedNats(data / "nats")
        try:
            print(f"whatsapp: {CLIENTS} clients × {PER_CLIENT} messages through one number…", flush=True)
            results = run_whatsapp(data, postgres, nats)
        finally:
            nats.stop()
            postgres.stop()
    print()
    print(report(results))


if __name__ == "__main__":
    main()
