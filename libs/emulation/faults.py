"""Faults an emulator can be told to inject, so tests can prove the bridge survives them."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal["status", "timeout"]


@dataclass
class Fault:
    """Answer the next `times` requests whose path matches `path` (a regex) with a failure.

    kind "status": answer `status` with the platform's own error body (the emulator builds it) and,
    for 429, a retry-after of `retry_after` seconds. kind "timeout": hold the request for `delay_s`
    seconds before answering normally, so the caller's timeout fires first.
    """

    path: str
    kind: FaultKind = "status"
    status: int = 500
    retry_after: int | None = None
    delay_s: float = 0.0
    times: int = 1
    description: str = ""
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        allowed = {"path", "kind", "status", "retry_after", "delay_s", "times", "description"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "path" not in data:
            raise ValueError("a fault needs a 'path' regex")
        if data.get("kind", "status") not in ("status", "timeout"):
            raise ValueError("fault kind must be 'status' or 'timeout'")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay_s": self.delay_s,
            "times": self.times,
            "description": self.description,
        }


class FaultInjector:
    """A thread-safe list of pending faults; each matching request uses up one `times`."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault._regex.search(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None
