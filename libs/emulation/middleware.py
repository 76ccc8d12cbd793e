"""ASGI middleware that records every platform request and injects configured faults, plus the
`/_emulator/...` control routes shared by all emulators."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.emulation.faults import Fault, FaultInjector
from libs.emulation.recording import RequestLog

CONTROL_PREFIX = "/_emulator/"

# Builds the platform's own error response for an injected status fault.
ErrorResponder = Callable[[Fault], Response]


class EmulatorMiddleware:
    """Records platform requests (not control calls) and applies the first matching fault."""

    def __init__(self, app: ASGIApp, *, log: RequestLog, faults: FaultInjector, error_responder: ErrorResponder):
        self.app = app
        self.log = log
        self.faults = faults
        self.error_responder = error_responder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = b""
        replay: Receive = receive
        # A file upload passes through as it arrives and is recorded without its body: it can be gigabytes.
        if not headers.get("content-type", "").lower().startswith("multipart/"):
            chunks: list[bytes] = []
            more = True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            body = b"".join(chunks)
            replayed = False

            async def replay_body() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            replay = replay_body

        status_holder = {"status": 0}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        fault = self.faults.take(scope["path"])
        try:
            if fault is not None and fault.kind == "status":
                response = self.error_responder(fault)
                await response(scope, replay, capture)
                return
            if fault is not None and fault.kind == "timeout":
                await asyncio.sleep(fault.delay_s)
            await self.app(scope, replay, capture)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            self.log.record(scope["method"], scope["path"], query, headers, body, status_holder["status"])


def control_routes(log: RequestLog, faults: FaultInjector) -> list[Route]:
    """`GET/DELETE /_emulator/requests`, `GET/POST/DELETE /_emulator/faults`."""

    async def requests_(request: Request) -> Response:
        if request.method == "DELETE":
            log.clear()
            return JSONResponse({"cleared": True})
        contains = request.query_params.get("path_contains", "")
        return JSONResponse({"requests": [e.to_json() for e in log.entries(contains)]})

    async def faults_(request: Request) -> Response:
        if request.method == "DELETE":
            faults.clear()
            return JSONResponse({"cleared": True})
        if request.method == "POST":
            try:
                data: Any = await request.json()
                fault = Fault.from_json(data)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            faults.add(fault)
            return JSONResponse({"fault": fault.to_json()}, status_code=201)
        return JSONResponse({"faults": [f.to_json() for f in faults.pending()]})

    return [
        Route(CONTROL_PREFIX + "requests", requests_, methods=["GET", "DELETE"]),
        Route(CONTROL_PREFIX + "faults", faults_, methods=["GET", "POST", "DELETE"]),
    ]
