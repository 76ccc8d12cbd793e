"""Installing into Kommo through the gateway (OAuth 2.0 against the emulator), tokens kept fresh
exactly once across replicas, uninstalling, and secrets that never appear in plaintext."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import content_pb2
from kommo_bridge.router.v1 import router_pb2, router_pb2_grpc
from sqlalchemy import create_engine, text

from libs.devstack.embedded import free_port
from libs.devstack.stack import SANDBOX_DOMAIN
from libs.errors import BadRequestError, CredentialRejectedError
from libs.rpc import call, open_channel
from tests.e2e.sandbox import Sandbox
from tests.support import wait_for

pytestmark = pytest.mark.e2e

DOMAIN = "shop.kommo.com"  # emulated: the account URL template points at the emulator


async def create_account(sandbox: Sandbox, domain: str = DOMAIN) -> str:
    amojo_id = str(uuid.uuid4())
    response = await sandbox.http.post(
        f"{sandbox.stack.kommo_accounts_url}/_emulator/accounts",
        json={"domain": domain, "amojo_id": amojo_id, "account_id": 31337, "name": "Shop"},
    )
    response.raise_for_status()
    return amojo_id


async def install(sandbox: Sandbox, domain: str = DOMAIN) -> str:
    """What an admin does: open our install link, allow access in Kommo, land on our redirect."""
    start = await sandbox.http.get(f"{sandbox.stack.public_url}/oauth/install", follow_redirects=False)
    assert start.status_code == 302
    state = parse_qs(urlparse(start.headers["location"]).query)["state"][0]
    code = (await sandbox.http.post(f"{sandbox.stack.kommo_accounts_url}/_emulator/accounts/{domain}/codes")).json()
    callback = await sandbox.http.get(
        f"{sandbox.stack.public_url}/oauth/callback",
        params={"code": code["code"], "referer": domain, "state": state, "client_id": sandbox.stack.client_id},
    )
    assert callback.status_code == 200, callback.text
    assert "installed" in callback.text
    return state


def auth_stub(sandbox: Sandbox, port: int | None = None) -> tuple[grpc.aio.Channel, auth_pb2_grpc.AuthServiceAsyncStub]:
    channel = open_channel(f"127.0.0.1:{port or sandbox.stack.auth_port}", sandbox.stack.service_token)
    return channel, auth_pb2_grpc.AuthServiceStub(channel)


async def test_install_through_the_gateway_then_a_message_reaches_the_new_chat(sandbox: Sandbox) -> None:
    amojo_id = await create_account(sandbox)
    state = await install(sandbox)

    channel, auth = auth_stub(sandbox)
    installation = await call(auth.GetInstallation, auth_pb2.GetInstallationRequest(account_id=amojo_id))
    assert installation.state == "active" and installation.domain == DOMAIN
    assert installation.scope_id == f"{sandbox.stack.channel_id}_{amojo_id}"
    assert installation.token_kind == "oauth" and installation.token_expires_at_ms > 0
    token = await call(auth.GetAccessToken, auth_pb2.GetAccessTokenRequest(account_id=amojo_id))
    assert token.access_token
    await channel.close(None)

    # The same install link cannot be used twice.
    replay = await sandbox.http.get(
        f"{sandbox.stack.public_url}/oauth/callback",
        params={"code": "whatever", "referer": DOMAIN, "state": state, "client_id": sandbox.stack.client_id},
    )
    assert replay.status_code == 400 and "already used" in replay.text

    # A bot connected to the new account carries a client's message into that account's chat.
    bot = (
        await sandbox.http.post(
            f"{sandbox.stack.telegram_url}/_emulator/bots", json={"username": "shop_support_bot", "first_name": "Shop"}
        )
    ).json()
    router_channel = open_channel(f"127.0.0.1:{sandbox.stack.router_port}", sandbox.stack.service_token)
    router = router_pb2_grpc.RouterServiceStub(router_channel)
    await call(
        router.ConnectChannel,
        router_pb2.ConnectChannelRequest(
            account_id=amojo_id, platform=content_pb2.PLATFORM_TELEGRAM, token=bot["token"]
        ),
    )
    await router_channel.close(None)
    response = await sandbox.http.post(
        f"{sandbox.stack.telegram_url}/_emulator/clients/messages",
        json={"bot_id": bot["id"], "user": {"id": 99, "first_name": "Zoe"}, "text": "hello shop"},
    )
    assert response.json()["status"] == 200

    async def arrived() -> bool:
        return any(m["scope_id"] == installation.scope_id for m in await sandbox.kommo_messages())

    await wait_for(arrived, timeout=60, what="the message in the installed account's chat")


async def test_denied_install_and_forged_state_install_nothing(sandbox: Sandbox) -> None:
    await create_account(sandbox)
    denied = await sandbox.http.get(
        f"{sandbox.stack.public_url}/oauth/callback", params={"error": "access_denied", "state": "x"}
    )
    assert denied.status_code == 200 and "cancelled" in denied.text
    code = (await sandbox.http.post(f"{sandbox.stack.kommo_accounts_url}/_emulator/accounts/{DOMAIN}/codes")).json()
    forged = await sandbox.http.get(
        f"{sandbox.stack.public_url}/oauth/callback",
        params={"code": code["code"], "referer": DOMAIN, "state": "made-up", "client_id": sandbox.stack.client_id},
    )
    assert forged.status_code == 400
    ssrf = await sandbox.http.get(
        f"{sandbox.stack.public_url}/oauth/callback",
        params={"code": code["code"], "referer": "evil.test/path?x=", "from_widget": "1"},
    )
    assert ssrf.status_code == 400
    elsewhere = await sandbox.http.get(
        f"{sandbox.stack.public_url}/oauth/callback",
        params={"code": code["code"], "referer": "shop.evil.example", "from_widget": "1"},
    )
    assert elsewhere.status_code == 400
    channel, auth = auth_stub(sandbox)
    listed = await call(auth.ListInstallations, auth_pb2.ListInstallationsRequest())
    await channel.close(None)
    assert [i.domain for i in listed.installations if i.domain] == [SANDBOX_DOMAIN]  # only the sandbox's own


async def test_concurrent_token_requests_at_expiry_refresh_exactly_once_across_two_auth_replicas(
    sandbox: Sandbox, database_url: str
) -> None:
    amojo_id = await create_account(sandbox)
    await install(sandbox)
    second_port = free_port()
    await asyncio.to_thread(
        sandbox.stack.start_service, "auth", "-2", {"BRIDGE_AUTH_GRPC_ADDR": f"127.0.0.1:{second_port}"}
    )
    engine = create_engine(database_url)
    with engine.begin() as conn:  # the access token is about to expire
        conn.execute(
            text("UPDATE installations SET token_expires_at = :at WHERE account_id = :a"),
            {"at": datetime.now(UTC) + timedelta(seconds=30), "a": amojo_id},
        )
    engine.dispose()

    stubs = [auth_stub(sandbox), auth_stub(sandbox, second_port)]
    requests = [
        call(stubs[n % 2][1].GetAccessToken, auth_pb2.GetAccessTokenRequest(account_id=amojo_id), deadline_s=30)
        for n in range(50)
    ]
    tokens = await asyncio.gather(*requests)
    for channel, _ in stubs:
        await channel.close(None)
    assert len({t.access_token for t in tokens}) == 1
    oauth = (await sandbox.http.get(f"{sandbox.stack.kommo_accounts_url}/_emulator/accounts/{DOMAIN}/oauth")).json()
    assert oauth["refresh_count"] == 1, oauth
    assert oauth["reused_refresh_tokens"] == [], oauth


async def test_revoked_account_needs_reauthorisation(sandbox: Sandbox, database_url: str) -> None:
    amojo_id = await create_account(sandbox)
    await install(sandbox)
    await sandbox.http.post(f"{sandbox.stack.kommo_accounts_url}/_emulator/accounts/{DOMAIN}/revoke")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE installations SET token_expires_at = now() WHERE account_id = :a"), {"a": amojo_id})
    engine.dispose()
    channel, auth = auth_stub(sandbox)
    with pytest.raises(CredentialRejectedError, match="install the integration again"):
        await call(auth.GetAccessToken, auth_pb2.GetAccessTokenRequest(account_id=amojo_id))
    installation = await call(auth.GetInstallation, auth_pb2.GetInstallationRequest(account_id=amojo_id))
    await channel.close(None)
    assert installation.state == "needs_reauth" and installation.last_error


async def test_uninstall_hook_disconnects_and_forgets_every_secret(sandbox: Sandbox, database_url: str) -> None:
    amojo_id = await create_account(sandbox)
    await install(sandbox)
    url = f"{sandbox.stack.public_url}/oauth/uninstall"
    forged = await sandbox.http.get(url, params={"client_uuid": sandbox.stack.client_id, "account_id": "31337",
                                                 "signature": "0" * 64})  # fmt: skip
    assert forged.status_code == 403
    hook = await sandbox.http.post(
        f"{sandbox.stack.kommo_accounts_url}/_emulator/accounts/{DOMAIN}/uninstall_hook", json={"url": url}
    )
    assert hook.json()["status_code"] == 200
    channel, auth = auth_stub(sandbox)
    installation = await call(auth.GetInstallation, auth_pb2.GetInstallationRequest(account_id=amojo_id))
    await channel.close(None)
    assert installation.state == "uninstalled"
    engine = create_engine(database_url)
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM secrets WHERE owner = :o"), {"o": f"installation:{amojo_id}"})
        assert left.scalar() == 0
    engine.dispose()


async def test_grpc_calls_need_the_service_credential_but_health_does_not(sandbox: Sandbox) -> None:
    plain = grpc.aio.insecure_channel(f"127.0.0.1:{sandbox.stack.auth_port}")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await auth_pb2_grpc.AuthServiceStub(plain).ListInstallations(auth_pb2.ListInstallationsRequest())
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    wrong = open_channel(f"127.0.0.1:{sandbox.stack.auth_port}", "not-the-token")
    with pytest.raises(grpc.aio.AioRpcError) as refused_again:
        await auth_pb2_grpc.AuthServiceStub(wrong).GetChannelCredentials(auth_pb2.GetChannelCredentialsRequest())
    assert refused_again.value.code() == grpc.StatusCode.UNAUTHENTICATED
    health = await health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    await plain.close(None)
    await wrong.close(None)


async def test_no_secret_in_a_database_dump_or_in_any_log(sandbox: Sandbox, database_url: str) -> None:
    amojo_id = await create_account(sandbox)
    await install(sandbox)
    await sandbox.client_writes(4242, "hello")
    await wait_for(lambda: _any(sandbox), timeout=60, what="a message in Kommo")
    channel, auth = auth_stub(sandbox)
    token = await call(auth.GetAccessToken, auth_pb2.GetAccessTokenRequest(account_id=amojo_id))
    webhook_secret = await sandbox.webhook_secret()
    await channel.close(None)
    secrets = {
        "bot token": sandbox.stack.sandbox_bot_token,
        "channel secret": sandbox.stack.channel_secret,
        "client secret": sandbox.stack.client_secret,
        "access token": token.access_token,
        "webhook secret": webhook_secret,
        "service token": sandbox.stack.service_token,
    }
    dump = pg_dump(database_url)
    assert "secrets" in dump and "installations" in dump
    for name, value in secrets.items():
        assert value not in dump, f"{name} in the database dump"
    logs = "".join(p.read_text(errors="replace") for p in (sandbox.stack.data_dir / "logs").glob("*.log"))
    assert '"msg": "ready"' in logs
    for name, value in secrets.items():
        assert value not in logs, f"{name} in the logs"


async def _any(sandbox: Sandbox) -> bool:
    return bool(await sandbox.kommo_messages())


def pg_dump(database_url: str) -> str:
    """A plain `pg_dump` of the test database, with the PostgreSQL the tests run on."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    binary = Path(str(__import__("pgserver").__file__)).parent / "pginstall" / "bin" / "pg_dump"
    host = url.query.get("host") or url.host or "127.0.0.1"
    args = [str(binary), "-h", str(host), "-U", url.username or "postgres", "-d", url.database or ""]
    if url.port:
        args += ["-p", str(url.port)]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


async def test_key_rotation_under_traffic_leaves_no_ciphertext_under_the_old_key(
    sandbox: Sandbox, database_url: str
) -> None:
    from libs.crypto import generate_key_spec
    from tests.e2e.test_flow import assert_inbound_exactly_once_in_order, clients_write

    old_keys = sandbox.stack.master_keys
    old_id = old_keys.split(":", 1)[0]
    new_key = generate_key_spec("k-rotated")
    clients = range(7_000_000, 7_000_005)
    writing = asyncio.create_task(clients_write(sandbox, clients, 8))

    # The operator's procedure: the new key goes first, auth restarts, then `bridgectl keys rotate`.
    auth = sandbox.stack.processes["auth"]
    await asyncio.to_thread(auth.stop)
    await asyncio.to_thread(sandbox.stack.start_service, "auth", "", {"BRIDGE_MASTER_KEYS": f"{new_key},{old_keys}"})
    channel, stub = auth_stub(sandbox)
    rotated = await call(stub.RotateKeys, auth_pb2.RotateKeysRequest(), deadline_s=60)
    await channel.close(None)
    # The bot token, the webhook secret and the sandbox account's long-lived Kommo token; auth re-stored
    # the channel secret under the new key at start-up.
    assert rotated.key_id == "k-rotated" and rotated.reencrypted == 3 and rotated.remaining == 0

    await writing
    await wait_for(lambda: _count_at_least(sandbox, 40), timeout=120, what="every message during the rotation")
    assert_inbound_exactly_once_in_order(await sandbox.kommo_messages(), clients, 8)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        key_ids = {row.key_id for row in conn.execute(text("SELECT key_id FROM secrets"))}
    engine.dispose()
    assert key_ids == {"k-rotated"}, f"ciphertext left under {key_ids - {'k-rotated'}} (old: {old_id})"


async def _count_at_least(sandbox: Sandbox, expected: int) -> bool:
    return len(await sandbox.kommo_messages()) >= expected


async def test_failed_refresh_holds_the_accounts_messages_until_reauthorisation_then_all_arrive_in_order(
    sandbox: Sandbox, database_url: str
) -> None:
    amojo_id = await create_account(sandbox)
    await install(sandbox)
    bot = (
        await sandbox.http.post(
            f"{sandbox.stack.telegram_url}/_emulator/bots", json={"username": "held_shop_bot", "first_name": "Held"}
        )
    ).json()
    router_channel = open_channel(f"127.0.0.1:{sandbox.stack.router_port}", sandbox.stack.service_token)
    await call(
        router_pb2_grpc.RouterServiceStub(router_channel).ConnectChannel,
        router_pb2.ConnectChannelRequest(
            account_id=amojo_id, platform=content_pb2.PLATFORM_TELEGRAM, token=bot["token"]
        ),
    )
    await router_channel.close(None)
    scope_id = f"{sandbox.stack.channel_id}_{amojo_id}"

    # Kommo refuses the refresh: the account needs re-authorisation.
    await sandbox.http.post(f"{sandbox.stack.kommo_accounts_url}/_emulator/accounts/{DOMAIN}/revoke")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE installations SET token_expires_at = now() WHERE account_id = :a"), {"a": amojo_id})
    channel, auth = auth_stub(sandbox)
    with pytest.raises(CredentialRejectedError):
        await call(auth.GetAccessToken, auth_pb2.GetAccessTokenRequest(account_id=amojo_id))
    await channel.close(None)

    async def held_client_writes(text_: str) -> None:
        response = await sandbox.http.post(
            f"{sandbox.stack.telegram_url}/_emulator/clients/messages",
            json={"bot_id": bot["id"], "user": {"id": 555, "first_name": "Held"}, "text": text_},
        )
        assert response.json()["status"] == 200

    def parked() -> int:
        """Client messages in the lot (the channel's source sync may be parked there too)."""
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM held_commands WHERE msg_id LIKE 'kommo:%'")
            return int(conn.execute(query).scalar() or 0)

    async def in_kommo() -> list[str]:
        return [m["message"]["text"] for m in await sandbox.kommo_messages() if m["scope_id"] == scope_id]

    # kommo_sender learns of the new state within its short cache time: probe until a message is held.
    slipped: list[str] = []
    for n in range(100):
        probe = f"probe {n}"
        await held_client_writes(probe)

        async def settled(probe: str = probe) -> bool:
            return parked() > 0 or probe in await in_kommo()

        await wait_for(settled, timeout=30, what=f"{probe} delivered or held")
        if parked():
            break
        slipped.append(probe)
    assert parked() == 1
    for n in range(6):
        await held_client_writes(f"held {n}")
        await sandbox.client_writes(6_000_000, f"u6000000 m{n}")  # another account, same partitions

    await wait_for(lambda: parked() == 7, timeout=60, what="seven held messages")
    # The other account was never blocked by the held one.
    await wait_for(lambda: _count_at_least(sandbox, 6), timeout=60, what="the other account's messages")
    assert await in_kommo() == slipped

    await install(sandbox)  # an admin re-authorises

    held = [f"probe {len(slipped)}", *(f"held {n}" for n in range(6))]

    async def all_released() -> bool:
        return len(await in_kommo()) == len(slipped) + len(held)

    await wait_for(all_released, timeout=60, what="the held messages after re-authorisation")
    assert await in_kommo() == slipped + held
    await wait_for(lambda: parked() == 0, timeout=30, what="an empty parking lot")
    engine.dispose()


async def test_a_private_integration_installs_with_a_long_lived_token(sandbox: Sandbox) -> None:
    """Kommo shows a long-lived token once, in the integration's Keys tab; here the emulator's token
    for the account plays that part: the bridge must use it as is and never try to refresh it."""
    from libs.kommo.oauth import KommoAccountClient

    amojo_id = await create_account(sandbox, "private.kommo.com")
    code = (
        await sandbox.http.post(f"{sandbox.stack.kommo_accounts_url}/_emulator/accounts/private.kommo.com/codes")
    ).json()["code"]
    client = KommoAccountClient(f"{sandbox.stack.kommo_accounts_url}/accounts/{{domain}}", sandbox.http)
    pair = await client.exchange_code(
        "private.kommo.com",
        sandbox.stack.client_id,
        sandbox.stack.client_secret,
        code,
        f"{sandbox.stack.public_url}/oauth/callback",
    )
    channel, auth = auth_stub(sandbox)
    installation = await call(
        auth.InstallWithToken,
        auth_pb2.InstallWithTokenRequest(domain="private.kommo.com", access_token=pair.access_token),
        deadline_s=30,
    )
    assert installation.account_id == amojo_id and installation.token_kind == "long_lived"
    assert installation.scope_id == f"{sandbox.stack.channel_id}_{amojo_id}"
    token = await call(auth.GetAccessToken, auth_pb2.GetAccessTokenRequest(account_id=amojo_id))
    assert token.access_token == pair.access_token
    with pytest.raises(BadRequestError):
        await call(auth.InstallWithToken, auth_pb2.InstallWithTokenRequest(domain="localhost", access_token="x"))
    await channel.close(None)
    oauth = (
        await sandbox.http.get(f"{sandbox.stack.kommo_accounts_url}/_emulator/accounts/private.kommo.com/oauth")
    ).json()
    assert oauth["refresh_count"] == 0
