"""The frame every messenger emulator app shares: the `/_emulator/` control routes, the middleware that
records requests and injects faults, the state closed on shutdown, and serving it alone from the shell."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from libs.emulation.faults import FaultInjector
from libs.emulation.middleware import EmulatorMiddleware, ErrorResponder, control_routes
from libs.emulation.recording import RequestLog


class EmulatorState(Protocol):
    """What the frame needs of an emulator's state: its request log, its faults, and a way to stop its
    background work."""

    @property
    def log(self) -> RequestLog: ...

    @property
    def faults(self) -> FaultInjector: ...

    async def aclose(self) -> None: ...


def emulator_app(state: EmulatorState, routes: Sequence[BaseRoute], error_responder: ErrorResponder) -> Starlette:
    """The app: control routes first, then the platform's `routes`; injected status faults answered by
    `error_responder` in the platform's error shape."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await state.aclose()

    middleware = [Middleware(EmulatorMiddleware, log=state.log, faults=state.faults, error_responder=error_responder)]
    all_routes = [*control_routes(state.log, state.faults), *routes]
    return Starlette(routes=all_routes, middleware=middleware, lifespan=lifespan)


def emulator_arguments(doc: str | None, default_port: int) -> argparse.ArgumentParser:
    """The command line of an emulator served alone (`--host`, `--port`), described by its module's `doc`;
    the emulator adds its own options."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    return parser


def serve(app: Starlette, args: argparse.Namespace) -> None:
    """Serve the app on the `--host` and `--port` of `emulator_arguments` until interrupted."""
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port)
