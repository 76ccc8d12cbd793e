"""The `BRIDGE_` configuration contract (ARCHITECTURE §6), validated once at start-up.

Every service reads the same `Settings`; each one then asks for the fields it cannot run without
(`require`), so a missing or malformed variable stops the process with a message naming it.
"""

from __future__ import annotations

import base64
import binascii
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(SystemExit):
    """Raised (and exits the process) when the configuration is unusable."""

    def __init__(self, message: str) -> None:
        super().__init__(f"configuration error: {message}")


def parse_master_keys(raw: str) -> list[tuple[str, bytes]]:
    """`id:base64key,id:base64key` (newest first) → [(id, 32-byte key), ...]."""
    keys: list[tuple[str, bytes]] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id:
            raise ValueError("each key must look like 'id:base64key'")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"key {key_id!r} is not valid base64") from exc
        if len(key) != 32:
            raise ValueError(f"key {key_id!r} must decode to 32 bytes (AES-256), got {len(key)}")
        if any(existing == key_id for existing, _ in keys):
            raise ValueError(f"key id {key_id!r} appears twice")
        keys.append((key_id, key))
    return keys


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRIDGE_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    data_dir: Path = Path(".data")

    database_url: str = ""
    nats_url: str = ""
    public_url: str = "http://127.0.0.1:8080"

    kommo_amojo_url: str = "https://amojo.kommo.com"
    kommo_account_url: str = "https://{domain}"
    # Where an admin grants access (the install link points here).
    kommo_oauth_url: str = "https://www.kommo.com/oauth"
    # Install redirects naming any other domain are refused: the code exchange sends our client
    # secret to that domain.
    kommo_domain_suffixes: str = "kommo.com,amocrm.com,amocrm.ru"
    kommo_client_id: str = ""
    kommo_client_secret: SecretStr = SecretStr("")
    kommo_redirect_uri: str = ""
    kommo_channel_id: str = ""
    kommo_channel_secret: SecretStr = SecretStr("")
    kommo_channel_code: str = ""
    # The chat channel's bot (Support issues `{id, client_id, name}` with the channel): hooks whose
    # `sender.id` is one of these (comma-separated) were written by Kommo's bot, not a manager.
    kommo_channel_bot_id: str = ""
    # Kommo REST v4 allows 7 requests/s; K-HTTP counts them per calling IP, so both limits apply,
    # shared by every replica (libs/ratelimit.py).
    kommo_rest_rate: float = Field(7.0, gt=0, le=100)
    kommo_rest_rate_per_ip: float = Field(7.0, gt=0, le=1000)

    telegram_api_url: str = "https://api.telegram.org"
    whatsapp_graph_url: str = "https://graph.facebook.com/v23.0"
    # WhatsApp's sending limits, kept per number by every messenger_sender replica together
    # (libs/messengers/whatsapp/pacing.py): messages per second from one number (80 by default, up to
    # 1000 once Meta upgrades it), and to one client (about one per 6 s, with a burst allowed).
    whatsapp_send_rate: float = Field(80.0, gt=0, le=1000)
    whatsapp_pair_rate: float = Field(1 / 6, gt=0, le=1000)
    whatsapp_pair_burst: int = Field(45, ge=1, le=1000)
    # Numbers whose rate differs from whatsapp_send_rate (Meta upgrades numbers one by one):
    # `<phone_number_id>=<messages per second>,…`.
    whatsapp_send_rate_overrides: str = ""
    viber_api_url: str = "https://chatapi.viber.com/pa"
    wechat_api_url: str = "https://api.weixin.qq.com"
    # A self-hosted telegram-bot-api server in --local mode: downloads have no size limit and uploads
    # go up to 2000 MB (the cloud Bot API: 20 MB down, 50 MB up).
    telegram_local_api: bool = False
    # How long a signed media link (inbound files Kommo downloads through the gateway) stays valid.
    media_link_ttl_s: int = Field(86400, ge=1)
    # How long audit history (every delivery report of a manager message) is kept, in days; 0 keeps it
    # forever. Pure bookkeeping has fixed windows of its own (libs/db/retention.py).
    history_retention_days: int = Field(30, ge=0, le=36500)

    master_keys: SecretStr = SecretStr("")
    # Shared bearer credential every gRPC call must carry (checked by the servers' interceptor).
    service_token: SecretStr = SecretStr("")

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(8080, ge=0, le=65535)
    auth_grpc_addr: str = "127.0.0.1:50051"
    router_grpc_addr: str = "127.0.0.1:50052"
    # Ordering lanes: messages of one conversation always travel in the same partition.
    partitions: int = Field(16, ge=1, le=1024)
    # JetStream stream replicas (3 in production on a NATS cluster).
    stream_replicas: int = Field(1, ge=1, le=5)
    http_timeout_s: float = Field(10.0, gt=0)
    # Every process serves /metrics, /livez and /readyz here; 0 turns the endpoint off.
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(9464, ge=0, le=65535)

    @field_validator("database_url")
    @classmethod
    def _database_url_form(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgresql+psycopg://")):
            raise ValueError("must be a PostgreSQL URL (postgresql+psycopg://user@host:port/db)")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("nats_url")
    @classmethod
    def _nats_url_form(cls, value: str) -> str:
        for url in filter(None, (part.strip() for part in value.split(","))):
            if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ValueError("must be nats://host:port (comma-separated for a cluster)")
        return value

    @field_validator("master_keys")
    @classmethod
    def _master_keys_form(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            parse_master_keys(value.get_secret_value())
        return value

    @field_validator("public_url", "kommo_amojo_url", "telegram_api_url", "whatsapp_graph_url")
    @classmethod
    def _http_url_form(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("whatsapp_send_rate_overrides")
    @classmethod
    def _send_rate_overrides_form(cls, value: str) -> str:
        parse_number_rates(value)
        return value

    @property
    def whatsapp_number_rates(self) -> dict[str, float]:
        """Each overridden number's messages per second, by phone_number_id."""
        return parse_number_rates(self.whatsapp_send_rate_overrides)

    @cached_property
    def keyring(self) -> list[tuple[str, bytes]]:
        return parse_master_keys(self.master_keys.get_secret_value())

    @property
    def kommo_domains(self) -> tuple[str, ...]:
        return tuple(part.strip().lower() for part in self.kommo_domain_suffixes.split(",") if part.strip())

    @property
    def kommo_bot_ids(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.kommo_channel_bot_id.split(",") if part.strip())

    @property
    def nats_servers(self) -> list[str]:
        return [part.strip() for part in self.nats_url.split(",") if part.strip()]

    def require(self, *fields: str) -> None:
        """Stop with a clear message if any of `fields` is empty."""
        missing = []
        for name in fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if not value:
                missing.append(f"BRIDGE_{name.upper()}")
        if missing:
            raise ConfigError(f"{', '.join(missing)} must be set")


def parse_number_rates(value: str) -> dict[str, float]:
    """`<phone_number_id>=<rate>,…` (ids are digits, rates above 0 and at most 1000) into a dict."""
    rates: dict[str, float] = {}
    for part in filter(None, (item.strip() for item in value.split(","))):
        number, _, rate = part.partition("=")
        try:
            per_second = float(rate)
        except ValueError:
            per_second = 0.0
        if not number.strip().isdigit() or not 0 < per_second <= 1000:
            raise ValueError("must be <phone_number_id>=<messages per second, up to 1000>, comma-separated")
        rates[number.strip()] = per_second
    return rates


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and `.env`); turn validation failures into one readable message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            problems.append(f"BRIDGE_{field.upper()}: {error['msg']}")
        raise ConfigError("; ".join(problems)) from None
