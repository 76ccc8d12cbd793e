"""deploy/tools/dead_letters.py against a real nats-server: list, replay where it failed, drop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from deploy.tools import dead_letters
from libs.devstack.embedded import EmbeddedNats

TOOL = Path(dead_letters.__file__)


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedNats(tmp_path / "nats")
    yield server.url
    server.stop()


async def _seed(url: str) -> None:
    """An inbound stream and two dead letters, shaped as libs/bus/consumer.py writes them."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BRIDGE_INBOUND", subjects=["inbound.>"]))
    await js.add_stream(StreamConfig(name="BRIDGE_DEAD_LETTERS", subjects=["dead.>"]))
    for sequence, reason in ((7, "gave up after retries: amojo 502"), (9, "permanent: unknown connection")):
        headers = {
            "Bridge-Key": f"conversation-{sequence}",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "Bridge-Dead-Stream": "BRIDGE_INBOUND",
            "Bridge-Dead-Subject": "inbound.p3",
            "Bridge-Dead-Consumer": "router-inbound-p3",
            "Bridge-Dead-Sequence": str(sequence),
            "Bridge-Dead-Reason": reason,
            "Nats-Msg-Id": f"dead:BRIDGE_INBOUND:{sequence}:router-inbound-p3",
        }
        await js.publish("dead.inbound", f"payload-{sequence}".encode(), headers=headers)
    await nc.close()


async def _state(url: str) -> tuple[list[tuple[str, bytes, dict[str, str]]], int]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    inbound = []
    info = await js.stream_info("BRIDGE_INBOUND")
    sequences = range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else range(0)
    for sequence in sequences:
        message = await js.get_msg("BRIDGE_INBOUND", sequence)
        headers = {str(key): str(value) for key, value in (message.headers or {}).items()}
        inbound.append((str(message.subject), message.data or b"", headers))
    remaining = (await js.stream_info("BRIDGE_DEAD_LETTERS")).state.messages
    await nc.close()
    return inbound, remaining


def test_list_replay_and_drop(nats_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_seed(nats_url))

    assert dead_letters.main(["--nats-url", nats_url, "list"]) == 0
    listing = capsys.readouterr().out
    assert "gave up after retries: amojo 502" in listing and "2 dead letters listed" in listing

    assert dead_letters.main(["--nats-url", nats_url, "replay", "1"]) == 0
    inbound, remaining = asyncio.run(_state(nats_url))
    assert remaining == 1
    [(subject, data, headers)] = inbound
    assert (subject, data) == ("inbound.p3", b"payload-7")
    assert headers["Bridge-Key"] == "conversation-7" and headers["traceparent"].startswith("00-0af7")
    assert headers["Nats-Msg-Id"] == "replay:1"
    assert not [key for key in headers if key.startswith("Bridge-Dead")]

    assert dead_letters.main(["--nats-url", nats_url, "drop", "--all"]) == 0
    inbound, remaining = asyncio.run(_state(nats_url))
    assert (len(inbound), remaining) == (1, 0)


def test_runs_from_stdin_as_in_a_pod(nats_url: str) -> None:
    """`kubectl exec -i … python3 - list < dead_letters.py`: the file alone, its URL from the pod's env."""
    asyncio.run(_seed(nats_url))
    env = {**os.environ, "BRIDGE_NATS_URL": nats_url}
    with TOOL.open() as script:
        result = subprocess.run(
            [sys.executable, "-", "list"], stdin=script, env=env, capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 0, result.stderr
    assert "permanent: unknown connection" in result.stdout and "2 dead letters listed" in result.stdout


def test_replay_needs_a_selection() -> None:
    with pytest.raises(SystemExit) as failure:
        dead_letters.main(["replay"])
    assert failure.value.code == 2
