"""The whole bridge as local processes: emulators (sandbox), five services, and their wiring."""

from __future__ import annotations

import json
import os
import secrets
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import content_pb2
from kommo_bridge.router.v1 import router_pb2, router_pb2_grpc

from libs.crypto import generate_key_spec
from libs.db import upgrade
from libs.devstack.embedded import free_port
from libs.devstack.processes import COLORS, ManagedProcess
from libs.kommo.oauth import KommoAccountClient
from libs.rpc import call, open_channel

SANDBOX_DOMAIN = "sandbox.kommo.com"
"""The sandbox account's domain; the account URL template sends it to the emulator."""

SERVICES = ("auth", "router", "kommo_sender", "messenger_sender", "gateway")


def _private_file(path: Path, make: str) -> str:
    """Read a dev secret from `path`, creating it (mode 0600) with `make` the first time."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(make)
    return make


@dataclass
class SandboxChannel:
    account_id: str
    connection_id: str
    bot_id: int
    bot_username: str


@dataclass
class Stack:
    data_dir: Path
    database_url: str
    nats_url: str
    echo: bool = False
    partitions: int = 8
    gateway_port: int = 0
    telegram_limits: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        secrets_dir = self.data_dir / "secrets"
        self.gateway_port = self.gateway_port or free_port()
        self.auth_port, self.router_port = free_port(), free_port()
        self.kommo_port, self.telegram_port, self.accounts_port = free_port(), free_port(), free_port()
        self.whatsapp_port = free_port()
        self.master_keys = os.environ.get("BRIDGE_MASTER_KEYS") or _private_file(
            secrets_dir / "master_keys", generate_key_spec("k1")
        )
        self.service_token = os.environ.get("BRIDGE_SERVICE_TOKEN") or _private_file(
            secrets_dir / "service_token", secrets.token_urlsafe(32)
        )
        # Sandbox: a chat channel registered with the Kommo emulator instead of Kommo's support.
        self.sandbox = not os.environ.get("BRIDGE_KOMMO_CHANNEL_ID")
        self.channel_bot_id = ""
        self.metrics_ports: dict[str, int] = {}
        if self.sandbox:
            self.channel_id = _private_file(secrets_dir / "sandbox_channel_id", str(uuid.uuid4()))
            self.channel_secret_file = secrets_dir / "sandbox_channel_secret"
            self.channel_secret = _private_file(self.channel_secret_file, secrets.token_hex(20))
            self.client_id = _private_file(secrets_dir / "sandbox_client_id", str(uuid.uuid4()))
            # The channel's bot, as Kommo's support issues it with a channel: Salesbot writes as it.
            self.channel_bot_id = _private_file(secrets_dir / "sandbox_channel_bot_id", str(uuid.uuid4()))
            self.client_secret = _private_file(secrets_dir / "sandbox_client_secret", secrets.token_urlsafe(32))
            self.sandbox_bot_token = _private_file(
                secrets_dir / "sandbox_bot_token", f"{secrets.randbelow(9 * 10**9) + 10**9}:{secrets.token_urlsafe(26)}"
            )

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def kommo_url(self) -> str:
        return f"http://127.0.0.1:{self.kommo_port}"

    @property
    def kommo_accounts_url(self) -> str:
        """The emulated Kommo account side (OAuth, REST v4), every account under /accounts/<domain>."""
        return f"http://127.0.0.1:{self.accounts_port}"

    @property
    def telegram_url(self) -> str:
        return f"http://127.0.0.1:{self.telegram_port}"

    @property
    def whatsapp_url(self) -> str:
        """The WhatsApp emulator's host; Graph calls go to `whatsapp_url + "/v23.0"`."""
        return f"http://127.0.0.1:{self.whatsapp_port}"

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("BRIDGE_")}
        env.update(
            {
                "BRIDGE_DATABASE_URL": self.database_url,
                "BRIDGE_NATS_URL": self.nats_url,
                "BRIDGE_PUBLIC_URL": self.public_url,
                "BRIDGE_GATEWAY_PORT": str(self.gateway_port),
                "BRIDGE_AUTH_GRPC_ADDR": f"127.0.0.1:{self.auth_port}",
                "BRIDGE_ROUTER_GRPC_ADDR": f"127.0.0.1:{self.router_port}",
                "BRIDGE_MASTER_KEYS": self.master_keys,
                "BRIDGE_SERVICE_TOKEN": self.service_token,
                "BRIDGE_PARTITIONS": str(self.partitions),
                "BRIDGE_DATA_DIR": str(self.data_dir),
            }
        )
        if self.sandbox:
            env.update(
                {
                    "BRIDGE_KOMMO_AMOJO_URL": self.kommo_url,
                    "BRIDGE_TELEGRAM_API_URL": self.telegram_url,
                    "BRIDGE_WHATSAPP_GRAPH_URL": f"{self.whatsapp_url}/v23.0",
                    "BRIDGE_KOMMO_CHANNEL_ID": self.channel_id,
                    "BRIDGE_KOMMO_CHANNEL_SECRET": self.channel_secret,
                    "BRIDGE_KOMMO_CHANNEL_CODE": "amo.ext.sandbox",
                    "BRIDGE_KOMMO_CHANNEL_BOT_ID": self.channel_bot_id,
                    "BRIDGE_KOMMO_CLIENT_ID": self.client_id,
                    "BRIDGE_KOMMO_CLIENT_SECRET": self.client_secret,
                    "BRIDGE_KOMMO_REDIRECT_URI": f"{self.public_url}/oauth/callback",
                    "BRIDGE_KOMMO_ACCOUNT_URL": f"{self.kommo_accounts_url}/accounts/{{domain}}",
                    "BRIDGE_KOMMO_OAUTH_URL": f"{self.kommo_accounts_url}/oauth",
                }
            )
        else:
            env.update({k: v for k, v in os.environ.items() if k.startswith("BRIDGE_") and k not in env})
        env.update(self.extra_env)
        return env

    def _process(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ManagedProcess:
        color = COLORS[len(self.processes) % len(COLORS)]
        # Every process has its own /metrics, /livez, /readyz port on this one host (127.0.0.1 only).
        self.metrics_ports[name] = free_port()
        probes = {"BRIDGE_METRICS_HOST": "127.0.0.1", "BRIDGE_METRICS_PORT": str(self.metrics_ports[name])}
        process = ManagedProcess(
            name, argv, {**self.env(), **probes, **(env or {})}, self.data_dir / "logs", echo=self.echo, color=color
        )
        self.processes[name] = process
        return process

    def start(self) -> None:
        upgrade(self.database_url)
        if self.sandbox:
            emulators = self._process(
                "emulators",
                [
                    sys.executable, "-m", "libs.devstack.emulators",
                    "--kommo-port", str(self.kommo_port),
                    "--telegram-port", str(self.telegram_port),
                    "--accounts-port", str(self.accounts_port),
                    "--client-id", self.client_id,
                    "--client-secret-file", str(self.data_dir / "secrets" / "sandbox_client_secret"),
                    "--redirect-uri", f"{self.public_url}/oauth/callback",
                    "--channel-id", self.channel_id,
                    "--channel-secret-file", str(self.channel_secret_file),
                    "--hook-url", f"{self.public_url}/webhooks/kommo/:scope_id",
                    "--telegram-limits", "on" if self.telegram_limits else "off",
                    "--whatsapp-port", str(self.whatsapp_port),
                ],
            )  # fmt: skip
            emulators.start()
            emulators.wait_ready()
        # Every service waits for what it needs (auth, the broker) by itself, so they start together:
        # their interpreters and imports overlap instead of queueing.
        started = [self._launch(name) for name in SERVICES]
        for process in started:
            process.wait_ready()

    def start_service(self, name: str, instance: str = "", env: dict[str, str] | None = None) -> ManagedProcess:
        """Start (or restart) a service; `instance` and `env` run a further replica with its own settings."""
        process = self._launch(name, instance, env)
        process.wait_ready()
        return process

    def _launch(self, name: str, instance: str = "", env: dict[str, str] | None = None) -> ManagedProcess:
        process = self.processes.get(name + instance)
        if process is None:
            process = self._process(name + instance, [sys.executable, "-m", f"services.{name}"], env)
        elif env:
            process.env = {**process.env, **env}
        process.start()
        return process

    def stop(self) -> None:
        """Every process drains at once; each is killed if it takes longer than its grace period."""
        processes = list(reversed(list(self.processes.values())))
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait_stopped()

    async def connect_sandbox(self, account_id: str = "", bot_username: str = "bridge_sandbox_bot") -> SandboxChannel:
        """Connect a sandbox Kommo account and a sandbox Telegram bot, as an admin would."""
        account_id = account_id or _private_file(self.data_dir / "secrets" / "sandbox_account_id", str(uuid.uuid4()))
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(
                f"{self.telegram_url}/_emulator/bots",
                json={"username": bot_username, "first_name": "Sandbox Shop", "token": self.sandbox_bot_token},
            )
            response.raise_for_status()
            bot = response.json()
        auth_channel = open_channel(f"127.0.0.1:{self.auth_port}", self.service_token)
        router_channel = open_channel(f"127.0.0.1:{self.router_port}", self.service_token)
        try:
            auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
            router = router_pb2_grpc.RouterServiceStub(router_channel)
            await self._install_sandbox_account(http_timeout=10, account_id=account_id, auth=auth)
            connection = await call(
                router.ConnectChannel,
                router_pb2.ConnectChannelRequest(
                    account_id=account_id, platform=content_pb2.PLATFORM_TELEGRAM, token=self.sandbox_bot_token
                ),
                deadline_s=15,
            )
        finally:
            await auth_channel.close(None)
            await router_channel.close(None)
        channel = SandboxChannel(account_id, connection.connection_id, int(bot["id"]), bot["username"])
        self.write_sandbox_file(channel)
        return channel

    async def _install_sandbox_account(
        self, *, http_timeout: float, account_id: str, auth: auth_pb2_grpc.AuthServiceAsyncStub
    ) -> None:
        """The sandbox Kommo account, installed as a private integration with a long-lived token, so the
        CRM API (sources, contacts) works in the sandbox as it does for a real account."""
        async with httpx.AsyncClient(timeout=http_timeout) as http:
            created = await http.post(
                f"{self.kommo_accounts_url}/_emulator/accounts",
                json={"domain": SANDBOX_DOMAIN, "amojo_id": account_id, "account_id": 30_000_001, "name": "Sandbox"},
            )
            created.raise_for_status()
            code = (await http.post(f"{self.kommo_accounts_url}/_emulator/accounts/{SANDBOX_DOMAIN}/codes")).json()
            oauth = KommoAccountClient(f"{self.kommo_accounts_url}/accounts/{{domain}}", http)
            pair = await oauth.exchange_code(
                SANDBOX_DOMAIN, self.client_id, self.client_secret, code["code"], f"{self.public_url}/oauth/callback"
            )
        await call(
            auth.InstallWithToken,
            auth_pb2.InstallWithTokenRequest(domain=SANDBOX_DOMAIN, access_token=pair.access_token),
            deadline_s=30,
        )

    def write_sandbox_file(self, channel: SandboxChannel) -> None:
        """Where `bridgectl sandbox …` finds the running sandbox (no secrets in it)."""
        info = {
            "kommo_url": self.kommo_url,
            "telegram_url": self.telegram_url,
            "gateway_url": self.public_url,
            "accounts_url": self.kommo_accounts_url,
            "auth_addr": f"127.0.0.1:{self.auth_port}",
            "router_addr": f"127.0.0.1:{self.router_port}",
            "account_id": channel.account_id,
            "scope_id": f"{self.channel_id}_{channel.account_id}",
            "connection_id": channel.connection_id,
            "bot_id": channel.bot_id,
            "bot_username": channel.bot_username,
            "kommo_domain": SANDBOX_DOMAIN,
            "kommo_bot_id": self.channel_bot_id,
        }
        (self.data_dir / "sandbox.json").write_text(json.dumps(info, indent=2))
