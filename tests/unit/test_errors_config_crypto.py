"""The error tree's mapping, the configuration contract, and secrets at rest."""

from __future__ import annotations

import base64

import pytest

from libs.config import ConfigError, load_settings, parse_master_keys
from libs.crypto import Keyring, Sealed, generate_key_spec
from libs.errors import (
    Action,
    AuthError,
    BadRequestError,
    ConflictError,
    CredentialRejectedError,
    MissingCredentialError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RecipientUnavailableError,
    RetryableError,
    disposition,
    error_code,
    http_status,
)
from libs.rpc.status import code_for, code_in, error_for, trailing_code


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (RetryableError("x"), Action.NAK),
        (RateLimitedError("x", retry_after=7), Action.NAK),
        (CredentialRejectedError("x"), Action.NAK),
        (PermanentError("x"), Action.TERM),
        (BadRequestError("x"), Action.TERM),
        (RecipientUnavailableError("x"), Action.TERM),
        (AuthError("x"), Action.TERM),
        (ValueError("bug"), Action.NAK),
    ],
)
def test_disposition_maps_each_branch(error: BaseException, action: Action) -> None:
    assert disposition(error, attempt=1).action is action


def test_retry_after_from_the_platform_wins_over_backoff() -> None:
    assert disposition(RateLimitedError("slow down", retry_after=35), attempt=4).delay == 35
    delays = [disposition(RetryableError("x"), attempt=n).delay for n in range(1, 12)]
    assert delays == sorted(delays) and delays[0] == 0.5 and delays[-1] == 60.0


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (BadRequestError("x"), 400),
        (MissingCredentialError("x"), 401),
        (AuthError("x"), 403),
        (NotFoundError("x"), 404),
        (ConflictError("x"), 409),
        (PermanentError("x"), 422),
        (RetryableError("x"), 503),
    ],
)
def test_http_status(error: BaseException, status: int) -> None:
    assert http_status(error) == status


def test_an_errors_stable_code_is_its_own_else_its_kinds_and_survives_grpc() -> None:
    assert error_code(BadRequestError("x", code="invalid_pipeline")) == "invalid_pipeline"
    assert error_code(RetryableError("x", retry_after=3, code="telegram_unreachable")) == "telegram_unreachable"
    assert [error_code(e) for e in (BadRequestError("x"), ConflictError("x"), AuthError("x"), ValueError())] == [
        "bad_request",
        "conflict",
        "access_denied",
        "unavailable",
    ]
    for error in (NotFoundError("gone", code="channel_not_found"), ConflictError("no", code="channel_removed")):
        carried = error_for(code_for(error), str(error), code_in(trailing_code(error)))
        assert type(carried) is type(error) and (str(carried), carried.code) == (str(error), error.code)
    assert trailing_code(PermanentError("no code")) == () and code_in(None) == ""


def test_bad_variable_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_NATS_URL", "http://not-nats:4222")
    with pytest.raises(ConfigError, match="BRIDGE_NATS_URL"):
        load_settings()
    monkeypatch.setenv("BRIDGE_NATS_URL", "nats://a:4222,nats://b:4222")
    monkeypatch.setenv("BRIDGE_GATEWAY_PORT", "99999")
    with pytest.raises(ConfigError, match="BRIDGE_GATEWAY_PORT"):
        load_settings()


def test_require_names_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIDGE_DATABASE_URL", raising=False)
    monkeypatch.delenv("BRIDGE_MASTER_KEYS", raising=False)
    settings = load_settings()
    with pytest.raises(ConfigError, match="BRIDGE_DATABASE_URL, BRIDGE_MASTER_KEYS must be set"):
        settings.require("database_url", "master_keys")


def test_master_keys_are_validated() -> None:
    good = generate_key_spec("k2") + "," + generate_key_spec("k1")
    assert [key_id for key_id, _ in parse_master_keys(good)] == ["k2", "k1"]
    short = "k1:" + base64.b64encode(b"short").decode()
    with pytest.raises(ValueError, match="32 bytes"):
        parse_master_keys(short)
    with pytest.raises(ValueError, match="appears twice"):
        parse_master_keys(generate_key_spec("k1") + "," + generate_key_spec("k1"))


def test_keyring_seals_under_newest_and_opens_old_rows() -> None:
    k1, k2 = generate_key_spec("k1"), generate_key_spec("k2")
    old = Keyring(parse_master_keys(k1))
    sealed = old.seal("123456:bot-token", "conn|messenger.token")
    assert sealed.key_id == "k1" and b"bot-token" not in sealed.ciphertext
    rotated = Keyring(parse_master_keys(f"{k2},{k1}"))
    assert rotated.current_key_id == "k2"
    assert rotated.open(sealed, "conn|messenger.token") == "123456:bot-token"
    assert rotated.seal("x", "c").key_id == "k2"
    with pytest.raises(PermanentError, match="failed authentication"):
        rotated.open(sealed, "other-conn|messenger.token")
    with pytest.raises(PermanentError, match="unknown key id"):
        Keyring(parse_master_keys(k2)).open(sealed, "conn|messenger.token")
    with pytest.raises(PermanentError, match="unknown key id"):
        rotated.open(Sealed("k9", sealed.nonce, sealed.ciphertext), "conn|messenger.token")
