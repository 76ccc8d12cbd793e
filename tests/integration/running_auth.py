"""The auth service inside a test's process: its real gRPC server on a free port, over the test's database."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
from collections.abc import AsyncIterator

from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from pydantic import SecretStr

from libs.config import load_settings
from libs.devstack.embedded import free_port
from libs.errors import RetryableError
from libs.rpc import call, open_channel
from services.auth.app import serve
from tests.support import wait_for

CHANNEL = "344a5002-f8ca-454d-af3d-396180102ac7"
SECRET = "f2d7f8704eff95087ed45b23ba99c0b5aac8278e"
CLIENT_SECRET = "widget-signing-secret-" + "s" * 42
REDIRECT_URI = "https://bridge.example.com/oauth/kommo"


@contextlib.asynccontextmanager
async def running_auth(database_url: str) -> AsyncIterator[auth_pb2_grpc.AuthServiceAsyncStub]:
    """A stub of a running auth service; the service stops when the block ends."""
    token = secrets.token_urlsafe(24)
    settings = load_settings(
        database_url=database_url,
        master_keys=SecretStr(f"test:{base64.b64encode(os.urandom(32)).decode()}"),
        service_token=SecretStr(token),
        kommo_channel_id=CHANNEL,
        kommo_channel_secret=SecretStr(SECRET),
        kommo_client_id="bridge-client",
        kommo_client_secret=SecretStr(CLIENT_SECRET),
        kommo_redirect_uri=REDIRECT_URI,
        auth_grpc_addr=f"127.0.0.1:{free_port()}",
    )
    stop = asyncio.Event()
    service = asyncio.create_task(serve(settings, stop), name="auth")
    channel = open_channel(settings.auth_grpc_addr, token)
    stub = auth_pb2_grpc.AuthServiceStub(channel)

    async def answering() -> bool:
        if service.done():
            service.result()  # it failed to start: say why
        try:
            await call(stub.GetChannelCredentials, auth_pb2.GetChannelCredentialsRequest())
        except RetryableError:
            return False
        return True

    try:
        await wait_for(answering, timeout=30, what="the auth service")
        yield stub
    finally:
        stop.set()
        await service
        await channel.close(None)
