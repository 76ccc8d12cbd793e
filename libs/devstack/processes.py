"""Child processes with their output prefixed (terminal) and kept (files), and readiness by log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

COLORS = ["36", "33", "35", "32", "34", "31", "96", "93"]


class ManagedProcess:
    """One service (or emulator host) process. Ready once it logs a JSON line with msg == "ready"."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, *, echo: bool, color: str = "0"
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.echo = echo
        self.color = color
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self._ready.clear()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        assert self._process.stdout is not None
        self._reader = threading.Thread(target=self._pump, args=(self._process.stdout,), daemon=True)
        self._reader.start()

    def _pump(self, stream: IO[bytes]) -> None:
        with open(self.log_path, "ab") as log_file:
            for raw in iter(stream.readline, b""):
                log_file.write(raw)
                log_file.flush()
                line = raw.decode("utf-8", "replace").rstrip()
                if '"ready"' in line:
                    try:
                        if json.loads(line).get("msg") == "ready":
                            self._ready.set()
                    except ValueError:
                        pass
                if self.echo:
                    sys.stdout.write(f"\033[{self.color}m{self.name:>16} |\033[0m {line}\n")
                    sys.stdout.flush()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready.wait(0.1):
                return
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._process.returncode}; see {self.log_path}")
        raise TimeoutError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def signal(self, sig: int) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (graceful drain), then SIGKILL if it does not finish in time."""
        self.terminate()
        self.wait_stopped(timeout)

    def terminate(self) -> None:
        """Ask for a graceful stop without waiting for it (so several processes drain at once)."""
        self.signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 15.0) -> None:
        """Wait for the process to end; SIGKILL it if it does not in time."""
        if self._process is None:
            return
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self._process.wait()
        if self._reader is not None:
            self._reader.join(5)

    def kill(self) -> None:
        """SIGKILL, no goodbye: what a crash looks like."""
        if self._process is not None and self._process.poll() is None:
            self.signal(signal.SIGKILL)
            self._process.wait()
        if self._reader is not None:
            self._reader.join(5)
