"""The gateway process: every inbound HTTP request of the bridge."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path

import httpx
import uvicorn
from kommo_bridge.auth.v1 import auth_pb2_grpc
from kommo_bridge.router.v1 import router_pb2_grpc
from nats.aio.client import Client as NATS
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from libs.bus import Publisher, connect, ensure_streams
from libs.config import Settings
from libs.db import create_engine
from libs.kommo.account_hooks import ROUTE_PREFIX
from libs.media import MediaLinks
from libs.rpc import open_channel
from libs.runtime import mark_ready
from services.gateway.credentials import GatewayCredentials
from services.gateway.file_sizes import FileSizes
from services.gateway.installs import Installs
from services.gateway.kommo_account_hooks import KommoAccountHooks
from services.gateway.media import MediaDownloads
from services.gateway.settings_access import SettingsAccess
from services.gateway.settings_api import SettingsApi
from services.gateway.spool import HookSpool
from services.gateway.webhooks import Webhooks
from services.gateway.whatsapp_app import BusinessAccounts, WhatsAppAppWebhooks

log = logging.getLogger(__name__)

# The settings window (services/gateway/settings_ui): static files, no build step. Their URLs carry a
# version derived from their content, so browsers keep them until a release changes them.
SETTINGS_UI = Path(__file__).with_name("settings_ui")
KOMMO_DOMAINS = ("kommo.com", "amocrm.com", "amocrm.ru")
KEEP_ALIVE_S = 120
"""How long an idle client connection is kept: longer than common HTTP clients keep one (httpx 5 s, Go
90 s), so the client always lets it go first. With uvicorn's default of 5 s, a sender reusing a
connection just as the gateway closes it gets a reset, and Kommo never resends a chat hook."""


class SettingsStatic(StaticFiles):
    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def settings_page(kommo_domains: tuple[str, ...]) -> Route:
    """`GET /settings/`: the window's page, framed only by Kommo; no inline script or style anywhere."""
    files = sorted(p for p in SETTINGS_UI.rglob("*") if p.is_file())
    version = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:12]
    html = (SETTINGS_UI / "index.html").read_text(encoding="utf-8").replace("__VERSION__", version)
    ancestors = " ".join(f"https://*.{domain}" for domain in kommo_domains)
    headers = {
        "Cache-Control": "no-store",
        "Content-Security-Policy": (
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors 'self' {ancestors}"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    async def page(request: Request) -> Response:
        return HTMLResponse(html, headers=headers)

    return Route("/settings/", page, methods=["GET"])


def create_app(
    webhooks: Webhooks,
    installs: Installs,
    settings_access: SettingsAccess,
    settings_api: SettingsApi,
    nc: NATS,
    spool: HookSpool,
    media: MediaDownloads,
    *,
    kommo_domains: tuple[str, ...] = KOMMO_DOMAINS,
    whatsapp_app: WhatsAppAppWebhooks | None = None,
    kommo_account_hooks: KommoAccountHooks | None = None,
) -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        # Ready while hooks can be kept: through the bus, or (Kommo hooks) through the spool.
        bus = nc.is_connected
        spool_ok = await spool.healthy()
        ready = bus or spool_ok
        body = {
            "ok": ready,
            "nats": "connected" if bus else "disconnected",
            "spool": "available" if spool_ok else "unavailable",
            "spool_pending": spool.pending,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/oauth/install", installs.start),
            Route("/oauth/callback", installs.callback),
            Route("/oauth/uninstall", installs.uninstall),
            settings_page(kommo_domains),
            Mount("/settings/static", SettingsStatic(directory=SETTINGS_UI), name="settings_static"),
            Route("/settings/api/session", settings_access.session, methods=["POST", "OPTIONS"]),
            Route("/settings/api/enter", settings_access.enter, methods=["POST"]),
            Route("/settings/api/me", settings_access.me, methods=["GET"]),
            Route("/settings/api/overview", settings_api.overview, methods=["GET"]),
            Route("/settings/api/channels", settings_api.add_channel, methods=["POST"]),
            Route("/settings/api/channels/{channel_id}", settings_api.change_channel, methods=["PATCH", "DELETE"]),
            Route("/settings/api/channels/{channel_id}/{action}", settings_api.channel_action, methods=["POST"]),
            Route("/settings/api/health", settings_api.health, methods=["GET"]),
            Route("/webhooks/kommo/{scope_id}", webhooks.kommo, methods=["POST"]),
            *(
                [
                    Route("/webhooks/whatsapp", whatsapp_app.receive, methods=["POST"]),
                    Route("/webhooks/whatsapp", whatsapp_app.check, methods=["GET"]),
                ]
                if whatsapp_app is not None
                else []
            ),
            *(
                [Route(f"{ROUTE_PREFIX}/{{scope_id}}/{{token}}", kommo_account_hooks.receive, methods=["POST"])]
                if kommo_account_hooks is not None
                else []
            ),
            Route("/webhooks/{platform}/{connection_id}", webhooks.messenger, methods=["POST"]),
            Route("/webhooks/{platform}/{connection_id}", webhooks.messenger_check, methods=["GET"]),
            Route("/media/v1/{token}/{name}", media.serve, methods=["GET", "HEAD"]),
        ]
    )


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    settings.require("database_url", "nats_url", "service_token")
    engine = create_engine(settings.database_url, pool_size=5)
    nc = await connect(settings.nats_servers, "gateway")
    js = nc.jetstream()
    await ensure_streams(js, settings.stream_replicas)
    publisher = Publisher(js, settings.partitions)
    spool = HookSpool(engine, publisher)
    auth_channel = open_channel(settings.auth_grpc_addr, settings.service_token.get_secret_value())
    auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
    credentials = GatewayCredentials(auth)
    await credentials.wait_for_channel(stop)
    access = SettingsAccess(auth, settings.public_url, settings.kommo_domains)
    router_channel = open_channel(settings.router_grpc_addr, settings.service_token.get_secret_value())
    settings_api = SettingsApi(access, auth, router_pb2_grpc.RouterServiceStub(router_channel))
    # Files stream through in bounded chunks; the read timeout applies per chunk, not to the whole file.
    media_http = httpx.AsyncClient(timeout=settings.http_timeout_s)
    media = MediaDownloads(MediaLinks.from_settings(settings), credentials, media_http, settings)
    webhooks = Webhooks(credentials, publisher, spool, nc, FileSizes(credentials, media_http, settings))
    router = router_pb2_grpc.RouterServiceStub(router_channel)
    whatsapp_app = WhatsAppAppWebhooks(webhooks, BusinessAccounts(router, credentials), credentials)
    app = create_app(
        webhooks,
        Installs(auth),
        access,
        settings_api,
        nc,
        spool,
        media,
        kommo_domains=settings.kommo_domains,
        whatsapp_app=whatsapp_app,
        kommo_account_hooks=KommoAccountHooks(webhooks, credentials, publisher),
    )

    config = uvicorn.Config(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    server = uvicorn.Server(config)
    spool.start()
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # surfaces the bind error
            return
        await asyncio.sleep(0.02)
    mark_ready()
    log.info("ready", extra={"host": settings.gateway_host, "port": settings.gateway_port})
    await stop.wait()
    server.should_exit = True
    await serving
    await spool.stop()
    await media_http.aclose()
    await router_channel.close(None)
    await auth_channel.close(None)
    await nc.drain()
    await engine.dispose()
