"""One error tree for the whole bridge, and the one place it is mapped to bus and HTTP outcomes.

    BridgeError
    ├── RetryableError          try again later: the queue naks with a delay, HTTP answers 503
    │   ├── RateLimitedError    the other side said when (Retry-After / retry_after)
    │   └── TimedOutError       the other side did not answer in time
    ├── PermanentError          retrying cannot help: the queue terms it into dead letters, HTTP answers 4xx
    │   ├── BadRequestError     malformed input (400)
    │   ├── NotFoundError       unknown connection, scope, chat (404)
    │   ├── ConflictError       not possible in the thing's present state: a removed channel (409)
    │   ├── TooLargeError       a file or body over a platform's size limit (413)
    │   └── RecipientUnavailableError  the client blocked the bot / left / never started the chat
    └── AuthError               a wrong signature or credential (403); never retried blindly
        ├── MissingCredentialError     no signature / secret / token at all (401)
        └── CredentialRejectedError    a stored credential stopped working (revoked token)

Handlers raise these; `disposition()`, `http_status()` and `error_code()` are the only code that turns them
into actions. An error may carry a stable `code` (`telegram_token_rejected`, `channel_not_found`, ...) that
APIs answer beside the English message, so a client can show its own text for it in the user's language.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose. Messages must never contain a secret."""

    code: str = ""
    """Stable and machine-readable (`snake_case`); "" lets `error_code()` name the kind of error instead."""

    def __init__(self, message: str = "", *, code: str = "") -> None:
        super().__init__(message)
        if code:
            self.code = code


class RetryableError(BridgeError):
    """A transient failure: the same call may succeed later."""

    def __init__(self, message: str, *, retry_after: float | None = None, code: str = "") -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class RateLimitedError(RetryableError):
    """The other side asked us to slow down and (usually) said for how long."""


class TimedOutError(RetryableError):
    """The other side did not answer in time (a proxy tells its caller 504, not 502)."""


class PermanentError(BridgeError):
    """Retrying the same input cannot succeed.

    `reason` names why in the words of `libs.status_texts` (a catalogue key, with its arguments), when
    the failure ends up in front of a manager as a delivery status; "" leaves the choice to the caller.
    """

    def __init__(
        self, message: str = "", *, code: str = "", reason: str = "", reason_args: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.reason = reason
        self.reason_args: dict[str, str] = dict(reason_args or {})


class BadRequestError(PermanentError):
    """Input we cannot accept: malformed JSON, missing fields, unsupported shapes."""


class NotFoundError(PermanentError):
    """The thing addressed (connection, scope, conversation) does not exist here."""


class TooLargeError(PermanentError):
    """A file or body is over what a platform accepts (Telegram's 20 MB download limit, upload limits)."""


class ConflictError(PermanentError):
    """The request is fine but the thing's present state forbids it (pausing a removed channel)."""


class RecipientUnavailableError(PermanentError):
    """The client cannot be reached: blocked the bot, deleted the chat, deactivated the account (the
    `reason` says which; Kommo shows it as 901 or 904)."""


class AuthError(BridgeError):
    """A signature, secret or credential was missing or wrong."""


class MissingCredentialError(AuthError):
    """The request carried no signature, secret or token at all."""


class CredentialRejectedError(AuthError):
    """A credential we hold was refused by the platform (revoked bot token, expired OAuth token)."""


class Action(enum.Enum):
    ACK = "ack"
    NAK = "nak"
    TERM = "term"


@dataclass(frozen=True)
class Disposition:
    """What a queue consumer does with a message whose handler raised."""

    action: Action
    delay: float = 0.0
    reason: str = ""


# Exponential backoff for retryable failures without a platform-given delay, capped.
_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 60.0


def backoff_delay(attempt: int) -> float:
    """Delay before redelivery number `attempt + 1` (attempt counts from 1)."""
    return float(min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * (2 ** max(0, attempt - 1))))


def disposition(error: BaseException, attempt: int) -> Disposition:
    """Map a handler's exception to nak/term. Unknown exceptions are treated as retryable: a bug
    should not silently drop a message, and `max_deliver` bounds the retries."""
    if isinstance(error, RetryableError):
        delay = error.retry_after if error.retry_after is not None else backoff_delay(attempt)
        return Disposition(Action.NAK, delay=delay, reason=str(error))
    if isinstance(error, CredentialRejectedError):
        # The credential may be fixed by an admin; keep the message and retry slowly.
        return Disposition(Action.NAK, delay=_BACKOFF_CAP_S, reason=str(error))
    if isinstance(error, PermanentError | AuthError):
        return Disposition(Action.TERM, reason=f"{type(error).__name__}: {error}")
    return Disposition(Action.NAK, delay=backoff_delay(attempt), reason=f"unexpected {type(error).__name__}")


def http_status(error: BaseException) -> int:
    """HTTP status for an inbound request that failed with `error`."""
    if isinstance(error, BadRequestError):
        return 400
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, ConflictError):
        return 409
    if isinstance(error, TooLargeError):
        return 413
    if isinstance(error, AuthError):
        return 401 if isinstance(error, MissingCredentialError) else 403
    if isinstance(error, PermanentError):
        return 422
    return 503


def error_code(error: BaseException) -> str:
    """The stable code an API answers for `error`: its own, else the name of its kind."""
    if isinstance(error, BridgeError) and error.code:
        return error.code
    for kind, code in _KIND_CODES:
        if isinstance(error, kind):
            return code
    return "unavailable"


# Most specific first.
_KIND_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (BadRequestError, "bad_request"),
    (NotFoundError, "not_found"),
    (ConflictError, "conflict"),
    (TooLargeError, "too_large"),
    (PermanentError, "refused"),
    (MissingCredentialError, "credential_missing"),
    (AuthError, "access_denied"),
    (RetryableError, "unavailable"),
)
