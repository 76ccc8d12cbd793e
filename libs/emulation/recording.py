"""Every request an emulator receives is recorded, so tests assert on what was actually sent."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def to_json(self) -> dict[str, Any]:
        try:
            body: Any = json.loads(self.body) if self.body else None
        except ValueError:
            body = self.body.decode("utf-8", "replace")
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": body,
            "status": self.status,
            "at": self.at,
        }


class RequestLog:
    """Bounded, thread-safe log of requests (oldest dropped past `limit`)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._entries: list[RecordedRequest] = []
        self._limit = limit
        self._lock = threading.Lock()

    def record(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes, status: int) -> None:
        entry = RecordedRequest(method, path, query, headers, body, status, time.time())
        with self._lock:
            self._entries.append(entry)
            if len(self._entries) > self._limit:
                del self._entries[: len(self._entries) - self._limit]

    def entries(self, path_contains: str = "") -> list[RecordedRequest]:
        with self._lock:
            return [e for e in self._entries if path_contains in e.path]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
