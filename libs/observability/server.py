"""The probe and metrics endpoint of a service process: `/metrics`, `/livez`, `/readyz`.

Consumers have no HTTP of their own, so this small server is how Kubernetes sees them alive and
Prometheus scrapes them. Ready means the process finished starting (connected, consumers running).
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

START_POLL_S = 0.01
"""How often start-up looks whether uvicorn is listening yet."""


class ProbeServer:
    def __init__(self, host: str, port: int) -> None:
        self.ready = False
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def app(self) -> Starlette:
        async def metrics(request: Request) -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

        async def livez(request: Request) -> Response:
            return PlainTextResponse("ok")

        async def readyz(request: Request) -> Response:
            return PlainTextResponse("ready" if self.ready else "starting", status_code=200 if self.ready else 503)

        return Starlette(
            routes=[Route("/metrics", metrics), Route("/livez", livez), Route("/readyz", readyz)],
        )

    async def start(self) -> None:
        """Serve in the background; port 0 means no probe server (several processes on one host)."""
        if not self._port:
            return
        config = uvicorn.Config(
            self.app(), host=self._host, port=self._port, log_config=None, access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(), name="probe-server")
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError(f"probe server could not listen on port {self._port}")
            await asyncio.sleep(START_POLL_S)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
