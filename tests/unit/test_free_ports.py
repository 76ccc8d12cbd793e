"""Ports for stacks started side by side: every pick is a different port, free at the time it is
given, and a port one process was given lately is not given to another."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from libs.devstack import embedded
from libs.devstack.embedded import FREE_PORT_RANGE, PORT_RESERVATION_S, free_port


def test_picks_are_distinct_free_and_in_the_range() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    low, high = FREE_PORT_RANGE
    assert all(low <= port <= high for port in ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # nothing holds it: the server given it can bind


def test_a_port_reserved_by_another_process_is_not_given_until_its_claim_lapses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(embedded, "PORT_RESERVATIONS", tmp_path)
    monkeypatch.setattr(embedded, "FREE_PORT_RANGE", (21000, 21001))
    (tmp_path / "21000").touch()  # another process's fresh claim
    lapsed = tmp_path / "21001"
    lapsed.touch()
    stale = time.time() - PORT_RESERVATION_S - 1
    os.utime(lapsed, (stale, stale))
    assert free_port() == 21001  # the lapsed claim is taken over, the fresh one is respected
    assert time.time() - lapsed.stat().st_mtime < PORT_RESERVATION_S
