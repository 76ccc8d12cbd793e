"""Structured JSON logs, one object per line, with secrets scrubbed before they are written.

Context (service, conversation, message ids) is attached with `extra={...}`, the trace id of the
message being handled automatically; a filter redacts values
of keys that look secret and token-shaped substrings, as a last line of defence: code should not
log secrets in the first place.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from opentelemetry import trace

_SECRET_KEYS = re.compile(r"(token|secret|password|authorization|signature|api_key|master_keys?)$", re.IGNORECASE)
# Telegram bot tokens, bearer tokens and 40-hex channel secrets, wherever they appear in text.
_SECRET_TEXT = [
    re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}\b"),
    re.compile(r"\b[0-9a-f]{40}\b"),
    re.compile(r"\bEAA[A-Za-z0-9]{20,}\b"),  # Meta (WhatsApp) access tokens
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"/bot\d+:[^/\s]+"),
]
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def redact_text(text: str) -> str:
    for pattern in _SECRET_TEXT:
        text = pattern.sub("[redacted]", text)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key) and not key.endswith(("_id", "_count", "_kind")):
        return "[redacted]"
    if isinstance(value, str):
        return redact_text(value)
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:  # a log line of a message's handling names its trace
            entry["trace_id"] = format(span.trace_id, "032x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = _redact_value(key, value)
        if record.exc_info:
            entry["error"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every logger's records to stdout as JSON; quiet chatty libraries."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access", "nats", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
