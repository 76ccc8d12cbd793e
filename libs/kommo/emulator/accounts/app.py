"""Assemble the account-side emulator app, and serve it alone (`python -m libs.kommo.emulator.accounts`)."""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware

from libs.emulation import EmulatorMiddleware, control_routes
from libs.kommo.emulator.accounts.api import AccountsApi, fault_response
from libs.kommo.emulator.accounts.control import account_control_routes
from libs.kommo.emulator.accounts.state import AccountsState
from libs.kommo.emulator.crm import CrmState


def create_account_emulator(
    state: AccountsState | None = None, crm: CrmState | None = None
) -> tuple[Starlette, AccountsState]:
    """The account emulator app and its state. Every account request is recorded and may get an injected
    fault. Point `BRIDGE_KOMMO_ACCOUNT_URL` at `http://HOST:PORT/accounts/{domain}`. Pass the amojo
    emulator's `crm` so the REST API serves the chats and leads amojo's messages made."""
    if state is not None and crm is not None and state.crm is not crm:
        raise ValueError("the given state already has another CrmState")
    state = state if state is not None else AccountsState(crm=crm)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await state.aclose()

    app = Starlette(
        routes=[*control_routes(state.log, state.faults), *account_control_routes(state), *AccountsApi(state).routes()],
        middleware=[Middleware(EmulatorMiddleware, log=state.log, faults=state.faults, error_responder=fault_response)],
        lifespan=lifespan,
    )
    return app, state


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator alone, optionally with one integration and one account ready."""
    import uvicorn

    parser = argparse.ArgumentParser(description="Kommo account-side (OAuth, REST v4 account) emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--client-id", default="")
    parser.add_argument(
        "--client-secret",
        default=os.environ.get("KOMMO_ACCOUNTS_EMULATOR_CLIENT_SECRET", ""),
        help="the integration's secret (or env KOMMO_ACCOUNTS_EMULATOR_CLIENT_SECRET)",
    )
    parser.add_argument("--redirect-uri", default="")
    parser.add_argument("--domain", default="", help="create one account at this domain, e.g. shop.kommo.com")
    parser.add_argument("--amojo-id", default="")
    parser.add_argument("--account-id", type=int, default=0)
    parser.add_argument("--account-name", default="")
    args = parser.parse_args(argv)

    app, state = create_account_emulator()
    if args.client_id:
        if not args.client_secret or not args.redirect_uri:
            parser.error("--client-id needs --client-secret and --redirect-uri")
        state.register_integration(args.client_id, args.client_secret, args.redirect_uri)
    if args.domain:
        if not args.amojo_id or args.account_id <= 0:
            parser.error("--domain needs --amojo-id and a positive --account-id")
        state.create_account(args.domain, args.amojo_id, args.account_id, args.account_name)
    uvicorn.run(app, host=args.host, port=args.port)
