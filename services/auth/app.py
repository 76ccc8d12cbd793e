"""The auth service process: the only holder of the master keys."""

from __future__ import annotations

import asyncio
import logging

import httpx
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc

from libs.config import ConfigError, Settings, parse_master_keys
from libs.crypto import Keyring
from libs.db import create_engine
from libs.kommo.client import AmojoClient
from libs.kommo.oauth import KommoAccountClient
from libs.kommo.rest import KommoRestClient, rest_limits
from libs.ratelimit import SharedRateLimiter
from libs.rpc import GrpcServer
from libs.runtime import mark_ready
from libs.secret_names import KOMMO_CHANNEL_OWNER, KOMMO_CHANNEL_SECRET
from services.auth.account_crm import AccountCrm
from services.auth.install_states import InstallStates
from services.auth.installations import InstallationStore
from services.auth.installer import Installer
from services.auth.retention import auth_pruner
from services.auth.secret_store import SecretStore
from services.auth.servicer import AuthServicer
from services.auth.settings_sessions import SettingsSessions
from services.auth.tokens import TokenKeeper

log = logging.getLogger(__name__)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    settings.require("database_url", "master_keys", "service_token", "kommo_channel_id", "kommo_channel_secret")
    try:
        keyring = Keyring(parse_master_keys(settings.master_keys.get_secret_value()))
    except ValueError as exc:
        raise ConfigError(f"BRIDGE_MASTER_KEYS: {exc}") from None
    engine = create_engine(settings.database_url)
    secrets = SecretStore(engine, keyring)
    # The channel secret arrives as configuration; from here on it lives encrypted and is served
    # over authenticated gRPC to the gateway (verifying hooks) and kommo_sender (signing).
    await secrets.put(KOMMO_CHANNEL_OWNER, KOMMO_CHANNEL_SECRET, settings.kommo_channel_secret.get_secret_value())

    async with httpx.AsyncClient(timeout=settings.http_timeout_s) as http:
        amojo = AmojoClient(
            settings.kommo_amojo_url,
            settings.kommo_channel_id,
            settings.kommo_channel_secret.get_secret_value(),
            http,
        )
        installations = InstallationStore(engine)
        limiter = SharedRateLimiter(engine)

        async def rest_slot(domain: str) -> None:  # auth's REST calls count against the same limit
            await limiter.acquire(rest_limits(domain, settings.kommo_rest_rate, settings.kommo_rest_rate_per_ip))

        oauth = KommoAccountClient(
            settings.kommo_account_url, http, allowed_suffixes=settings.kommo_domains, before_rest=rest_slot
        )
        tokens = TokenKeeper(engine, installations, secrets, oauth, settings)
        installer = Installer(engine, settings, InstallStates(engine), installations, secrets, tokens, oauth, amojo)
        servicer = AuthServicer(
            secrets,
            installations,
            amojo,
            installer,
            tokens,
            settings.kommo_channel_id,
            settings.kommo_channel_code,
            SettingsSessions(engine, installations, settings),
            AccountCrm(
                KommoRestClient(
                    http,
                    settings.kommo_account_url,
                    limiter,
                    per_account=settings.kommo_rest_rate,
                    per_ip=settings.kommo_rest_rate_per_ip,
                    allowed_suffixes=settings.kommo_domains,
                ),
                tokens,
                installations,
            ),
        )
        server = GrpcServer(
            settings.service_token.get_secret_value(), [auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name]
        )
        auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server.server)
        port = await server.start(settings.auth_grpc_addr)
        tokens.start()
        pruner = auth_pruner(engine)
        pruner.start()
        mark_ready()
        log.info("ready", extra={"port": port})
        await stop.wait()
        await server.stop()
        await tokens.stop()
        await pruner.stop()
    await engine.dispose()
