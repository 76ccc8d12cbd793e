"""A 100 MB file from a client into Kommo, measured: the client sends a document through a local Bot API
server (no download limit), Kommo's emulator downloads it through the gateway's signed link, and the
resident memory of every service is sampled every 50 ms during the transfer. The bytes Kommo got must
hash to the bytes the client sent.

    python -m bench.media            (BENCH_MEDIA_MB=100 by default; also run at the end of `make bench`)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import psutil

from libs.devstack.embedded import EmbeddedNats, EmbeddedPostgres
from libs.devstack.stack import SERVICES, Stack
from tests.e2e.sandbox import Sandbox
from tests.support import wait_for

SIZE_MB = int(os.environ.get("BENCH_MEDIA_MB", "100"))
SAMPLE_INTERVAL_S = 0.05
CHUNK_BYTES = 2**20
USER_ID = 31_000_001


def write_random_file(path: Path, size: int) -> str:
    """`size` random bytes on disk (never in memory at once); returns their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        left = size
        while left:
            chunk = os.urandom(min(CHUNK_BYTES, left))
            digest.update(chunk)
            handle.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
            yield chunk


class RssSampler:
    """The peak resident memory of each process, sampled every SAMPLE_INTERVAL_S until stopped."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peaks_mib: dict[str, float] = dict.fromkeys(pids, 0.0)
        self.samples = 0
        self._stop = asyncio.Event()

    def sample(self) -> dict[str, float]:
        now = {}
        for name, process in self._processes.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                now[name] = process.memory_info().rss / 2**20
                self.peaks_mib[name] = max(self.peaks_mib[name], now[name])
        self.samples += 1
        return now

    async def run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), SAMPLE_INTERVAL_S)

    def stop(self) -> None:
        self._stop.set()


async def transfer(stack: Stack, path: Path, size: int, sha256: str) -> dict[str, Any]:
    channel = await stack.connect_sandbox()
    async with httpx.AsyncClient(timeout=600) as http:
        sandbox = Sandbox(stack, channel, http)
        await sandbox.telegram_local_api(True)
        stored = await sandbox.telegram_file(file_chunks(path), "document", "application/zip")
        assert stored["sha256"] == sha256, "the emulator stored other bytes than the file"

        pids = {name: stack.processes[name].pid for name in SERVICES}
        sampler = RssSampler({name: pid for name, pid in pids.items() if pid})
        before = sampler.sample()
        sampling = asyncio.create_task(sampler.run())
        started = time.monotonic()
        document = {
            "file_id": stored["file_id"],
            "file_unique_id": stored["file_unique_id"],
            "file_name": "archive.zip",
            "mime_type": "application/zip",
            "file_size": size,
        }
        await sandbox.client_sends(sandbox.user(USER_ID), {"document": document})
        downloads: list[dict[str, Any]] = []

        async def downloaded() -> bool:
            downloads[:] = await sandbox.kommo_media_downloads()
            return bool(downloads) and downloads[-1]["done"]

        await wait_for(downloaded, timeout=600, interval=0.2, what="Kommo's download of the file")
        elapsed = time.monotonic() - started
        sampler.stop()
        await sampling
    download = downloads[-1]
    return {
        "size": size,
        "status": download["status"],
        "bytes": download["size"],
        "sha_equal": download["sha256"] == sha256,
        "elapsed_s": elapsed,
        "download_s": download["finished_at"] - download["started_at"],
        "before_mib": before,
        "peak_mib": sampler.peaks_mib,
        "samples": sampler.samples,
    }


Transfer = Callable[[Stack, Path, int, str], Coroutine[Any, Any, dict[str, Any]]]


def run_on_local_api_stack(
    data: Path, postgres: EmbeddedPostgres, nats: EmbeddedNats, name: str, transfer: Transfer
) -> dict[str, Any]:
    """Run a transfer of a fresh random file of SIZE_MB on a stack of its own, whose Telegram is a local
    Bot API server (the cloud Bot API would refuse 100 MB both ways)."""
    size = SIZE_MB * 2**20
    path = data / f"{name}.bin"
    sha256 = write_random_file(path, size)
    stack = Stack(
        data / f"{name}-stack",
        postgres.database_url(f"bench_{name}"),
        nats.url,
        partitions=8,
        telegram_limits=False,
        extra_env={"BRIDGE_TELEGRAM_LOCAL_API": "true"},
    )
    try:
        stack.start()
        return asyncio.run(transfer(stack, path, size, sha256))
    finally:
        stack.stop()
        path.unlink(missing_ok=True)


def run_media(data: Path, postgres: EmbeddedPostgres, nats: EmbeddedNats) -> dict[str, Any]:
    """A client's file to Kommo, through the gateway's signed link."""
    return run_on_local_api_stack(data, postgres, nats, "media", transfer)


def report(results: dict[str, Any]) -> str:
    mib = results["size"] / 2**20
    lines = [
        f"| {mib:.0f} MB client file → Kommo (local Bot API server) | |",
        "|---|---|",
        f"| Kommo's download through the signed link | HTTP {results['status']}, {results['bytes']} bytes, "
        f"SHA-256 {'equal' if results['sha_equal'] else 'DIFFERENT'} |",
        f"| client sends → download complete | {results['elapsed_s']:.1f} s |",
        f"| download alone | {results['download_s']:.1f} s ({mib / max(results['download_s'], 1e-9):.0f} MB/s) |",
        "",
        *memory_table(results),
    ]
    return "\n".join(lines)


def memory_table(results: dict[str, Any]) -> list[str]:
    """Each service's resident memory before a transfer and its peak during it, as table rows."""
    return [
        f"| process | resident memory before | peak during the transfer ({results['samples']} samples, "
        f"every {SAMPLE_INTERVAL_S * 1000:.0f} ms) |",
        "|---|---|---|",
        *(
            f"| {name} | {results['before_mib'].get(name, 0):.0f} MiB | {peak:.0f} MiB |"
            for name, peak in results["peak_mib"].items()
        ),
    ]


def run_alone(what: str, run: Callable[[Path, EmbeddedPostgres, EmbeddedNats], dict[str, Any]]) -> dict[str, Any]:
    """A scenario run on its own (`python -m bench.media…`), with its own PostgreSQL and nats-server."""
    with tempfile.TemporaryDirectory(prefix="bridge-bench-media-") as tmp:
        data = Path(tmp)
        postgres = EmbeddedPostgres(data / "postgres")
        nats = EmbeddedNats(data / "nats")
        try:
            print(f"media: a {SIZE_MB} MB file {what}…", flush=True)
            return run(data, postgres, nats)
        finally:
            nats.stop()
            postgres.stop()


def main() -> None:
    results = run_alone("from a client into Kommo", run_media)
    print()
    print(report(results))
    if not results["sha_equal"] or results["status"] != 200:
        raise SystemExit("media: Kommo did not get the client's bytes")


if __name__ == "__main__":
    main()
