"""A 100 MB file from a manager to a Telegram client, measured: the manager attaches it in Kommo, the
bridge streams it from Kommo's URL into a multipart upload to a local Bot API server (too large for
Telegram to fetch by URL, and over the cloud's 50 MB), and the resident memory of every service is sampled
every 50 ms during the transfer. The bytes Telegram got must hash to the bytes the manager attached.

    python -m bench.media_outbound   (BENCH_MEDIA_MB=100 by default; also run at the end of `make bench`)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from bench.media import RssSampler, file_chunks, memory_table, run_alone, run_on_local_api_stack
from libs.devstack.embedded import EmbeddedNats, EmbeddedPostgres
from libs.devstack.stack import SERVICES, Stack
from tests.e2e.sandbox import Sandbox
from tests.support import wait_for

USER_ID = 31_000_002
DELIVERED = 1


async def transfer(stack: Stack, path: Path, size: int, sha256: str) -> dict[str, Any]:
    channel = await stack.connect_sandbox()
    async with httpx.AsyncClient(timeout=600) as http:
        sandbox = Sandbox(stack, channel, http)
        await sandbox.telegram_local_api(True)
        await sandbox.client_writes(USER_ID, "Please send me the catalogue")

        async def chat_opened() -> bool:
            chats = await sandbox.kommo_chats()
            return any(c["client"].get("client_id", "").endswith(f":{USER_ID}") for c in chats)

        await wait_for(chat_opened, timeout=60, what="the client's chat in Kommo")
        conversation_id = await sandbox.conversation_of(USER_ID)
        attachment = await sandbox.kommo_attachment("catalogue.zip", file_chunks(path), "application/zip")
        assert attachment["sha256"] == sha256, "the Kommo emulator stored other bytes than the file"

        pids = {name: stack.processes[name].pid for name in SERVICES}
        sampler = RssSampler({name: pid for name, pid in pids.items() if pid})
        before = sampler.sample()
        sampling = asyncio.create_task(sampler.run())
        started = time.monotonic()
        hook = await sandbox.manager_sends(
            conversation_id,
            {"type": "file", "media": attachment["url"], "file_name": "catalogue.zip", "file_size": size},
        )
        statuses: list[dict[str, Any]] = []

        async def reported() -> bool:
            statuses[:] = (await sandbox.kommo_statuses()).get(hook["kommo_msgid"], [])
            return bool(statuses)

        await wait_for(reported, timeout=600, interval=0.2, what="the delivery status of the file")
        elapsed = time.monotonic() - started
        sampler.stop()
        await sampling
        uploads = await sandbox.telegram_uploads(USER_ID)
    upload = uploads[-1] if uploads else {}
    return {
        "size": size,
        "status": statuses[-1]["status"],
        "error": statuses[-1]["error"],
        "method": upload.get("method", ""),
        "via": upload.get("via", ""),
        "bytes": upload.get("file_size", 0),
        "sha_equal": upload.get("sha256") == sha256,
        "elapsed_s": elapsed,
        "before_mib": before,
        "peak_mib": sampler.peaks_mib,
        "samples": sampler.samples,
    }


def run_media_outbound(data: Path, postgres: EmbeddedPostgres, nats: EmbeddedNats) -> dict[str, Any]:
    """A manager's file to Telegram, streamed from Kommo's URL into an upload (2000 MB allowed there)."""
    return run_on_local_api_stack(data, postgres, nats, "media_outbound", transfer)


def report(results: dict[str, Any]) -> str:
    mib = results["size"] / 2**20
    delivered = "delivered" if results["status"] == DELIVERED else f"status {results['status']} {results['error']}"
    lines = [
        f"| {mib:.0f} MB manager file → Telegram (local Bot API server) | |",
        "|---|---|",
        f"| what Telegram got | {results['method']} by {results['via']}, {results['bytes']} bytes, "
        f"SHA-256 {'equal' if results['sha_equal'] else 'DIFFERENT'}; Kommo shows {delivered} |",
        f"| manager sends → status at Kommo | {results['elapsed_s']:.1f} s "
        f"({mib / max(results['elapsed_s'], 1e-9):.0f} MB/s) |",
        "",
        *memory_table(results),
    ]
    return "\n".join(lines)


def main() -> None:
    results = run_alone("from a manager to a Telegram client", run_media_outbound)
    print()
    print(report(results))
    if not results["sha_equal"] or results["status"] != DELIVERED:
        raise SystemExit("media: Telegram did not get the manager's bytes")


if __name__ == "__main__":
    main()
