"""How every service process starts and stops: JSON logs, validated settings, SIGTERM = drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from libs.config import Settings, load_settings
from libs.errors import RetryableError
from libs.logs import configure_logging
from libs.observability import ProbeServer, configure_tracing, set_service
from libs.observability.tracing import shutdown_tracing

log = logging.getLogger(__name__)

ServiceMain = Callable[[Settings, asyncio.Event], Awaitable[None]]

_probe: ProbeServer | None = None


def mark_ready() -> None:
    """The service finished starting: `/readyz` answers 200 from now on."""
    if _probe is not None:
        _probe.ready = True


def run_service(name: str, main: ServiceMain) -> None:
    """Run `main(settings, stop_event)` until it returns; SIGTERM/SIGINT set `stop_event`."""
    settings = load_settings()
    configure_logging(name, settings.log_level)
    set_service(name)
    configure_tracing(name)

    async def runner() -> None:
        global _probe
        _probe = ProbeServer(settings.metrics_host, settings.metrics_port)
        await _probe.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        log.info("starting", extra={"environment": settings.environment})
        try:
            await main(settings, stop)
        finally:
            _probe.ready = False
            await _probe.stop()
            shutdown_tracing()
        log.info("stopped")

    asyncio.run(runner())


K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A small time-bounded cache for lookups that are asked per message (secrets, connections)."""

    def __init__(self, ttl_s: float, loader: Callable[[K], Awaitable[V]]) -> None:
        self._ttl = ttl_s
        self._loader = loader
        self._items: dict[K, tuple[float, V]] = {}

    async def get(self, key: K) -> V:
        """The cached value while fresh; else load it. When loading fails for a transient reason and a
        stale value exists, serve the stale value (and retry the load after another TTL)."""
        now = asyncio.get_running_loop().time()
        hit = self._items.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            value = await self._loader(key)
        except RetryableError:
            if hit is None:
                raise
            self._items[key] = (now + self._ttl, hit[1])
            return hit[1]
        self._items[key] = (now + self._ttl, value)
        return value

    def invalidate(self, key: K) -> None:
        self._items.pop(key, None)
