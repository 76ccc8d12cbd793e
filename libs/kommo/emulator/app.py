"""Assemble the amojo emulator app, and serve it alone with uvicorn (`python -m libs.kommo.emulator`)."""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware

from libs.emulation import EmulatorMiddleware, control_routes
from libs.kommo.emulator.api import AmojoApi
from libs.kommo.emulator.attachments import attachment_routes
from libs.kommo.emulator.control import amojo_control_routes
from libs.kommo.emulator.crm import CrmState
from libs.kommo.emulator.errors import fault_response
from libs.kommo.emulator.media_downloads import media_download_routes
from libs.kommo.emulator.state import AmojoState


def create_amojo_emulator(state: AmojoState | None = None, crm: CrmState | None = None) -> tuple[Starlette, AmojoState]:
    """The emulator app and its state. Every amojo request is recorded and may get an injected fault.

    Pass the account emulator's `crm` so chats and incoming messages reach the CRM it serves over REST.
    """
    if state is not None and crm is not None and state.crm is not crm:
        raise ValueError("the given state already has another CrmState")
    state = state if state is not None else AmojoState(crm=crm)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await state.aclose()

    app = Starlette(
        routes=[
            *control_routes(state.log, state.faults),
            *amojo_control_routes(state),
            *media_download_routes(state.media),
            *attachment_routes(state.attachments),
            *AmojoApi(state).routes(),
        ],
        middleware=[Middleware(EmulatorMiddleware, log=state.log, faults=state.faults, error_responder=fault_response)],
        lifespan=lifespan,
    )
    return app, state


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator alone: `python -m libs.kommo.emulator --port 9001 --channel-id … --hook-url …`."""
    import uvicorn

    parser = argparse.ArgumentParser(description="Kommo amojo emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--channel-id", default="")
    parser.add_argument(
        "--channel-secret",
        default=os.environ.get("AMOJO_EMULATOR_CHANNEL_SECRET", ""),
        help="the channel secret (or env AMOJO_EMULATOR_CHANNEL_SECRET)",
    )
    parser.add_argument("--hook-url", default="", help="the channel's webhook URL; ':scope_id' is substituted")
    parser.add_argument("--channel-code", default="")
    args = parser.parse_args(argv)

    app, state = create_amojo_emulator()
    if args.channel_id:
        if not args.channel_secret:
            parser.error("--channel-id needs --channel-secret")
        state.register_channel(args.channel_id, args.channel_secret, args.hook_url, args.channel_code)
    uvicorn.run(app, host=args.host, port=args.port)
