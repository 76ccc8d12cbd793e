"""Graph API errors (reference/messenger-apis.md §2), and the one place they become ours.

Graph answers a failure with HTTP 4xx/5xx and `{"error": {"message", "type", "code", "error_subcode",
"error_data": {"details"}, "fbtrace_id"}}`; the same codes come back later in a `failed` status webhook
(`statuses[].errors[]`) when Meta accepted a message and could not deliver it. Both are keyed on `code`,
never on the HTTP status, and both name the reason a manager reads (libs.status_texts) the same way:

- 131047 the 24-hour window is closed: only a template may go (`window_closed`);
- 131026 the number cannot receive it (not on WhatsApp, old app, blocked): Kommo's 904;
- 1320xx the template was refused, with what was wrong with it;
- 130429 / 131056 / 4 / 80007 and HTTP 429: throughput, pair-rate and app limits, retried after a pause;
  the same codes in a `failed` status (Meta took the message, then held it back) are not sent again by
  the bridge: the status comes after later messages of the conversation may have gone, so a copy sent
  now would arrive out of order; Kommo shows an error saying why and to send it again (`sending_limited`);
- 0 / 104 / 190 and HTTP 401 the access token, 10 / 200-299 its permissions: the credential.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from libs import status_texts
from libs.errors import (
    BridgeError,
    CredentialRejectedError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RecipientUnavailableError,
    RetryableError,
    TimedOutError,
)
from libs.messengers.whatsapp.pacing import PAIR_RATE_REFUSED, THROUGHPUT_REFUSED
from libs.observability.metrics import count_rate_limited

PLATFORM: Final = "whatsapp"

WINDOW_CLOSED: Final = 131047
UNDELIVERABLE: Final = 131026
THROUGHPUT_LIMIT: Final = 130429
PAIR_RATE_LIMIT: Final = 131056
TEMPLATE_CODES: Final = range(132000, 133000)

# Pauses before a retry when Graph names a limit but not when it ends: the per-number throughput is a
# per-second limit; the pair rate allows about one message per 6 s to one user; app and account call
# limits (4, 80007) are counted per hour, so a minute spreads the retries out.
_RATE_LIMIT_PAUSES_S: Final[Mapping[int, float]] = {
    THROUGHPUT_LIMIT: 1.0,
    PAIR_RATE_LIMIT: 6.0,
    4: 60.0,
    80007: 60.0,
}
_HTTP_429_PAUSE_S: Final = 5.0
_TOKEN_CODES: Final = frozenset({0, 104, 190})
_PERMISSION_CODES: Final = frozenset({10, *range(200, 300)})
# "Unsupported get request. Object with ID ... does not exist": a media id past its 7 days, say.
_UNKNOWN_OBJECT: Final = (100, 33)
# Meta's own trouble: the same call may succeed in a moment.
_TRANSIENT_CODES: Final = frozenset({1, 2, 131000, 131016, 131057, 133004, 135000})
_CODE_PREFIX: Final = re.compile(r"^\(#\d+\)\s*")
_TEMPLATE_DETAILS: Final[Mapping[int, str]] = {
    132000: "the number of parameters does not match the template",
    132001: "no approved template with this name in this language",
    132005: "the text with its parameters is too long",
    132007: "the content breaks WhatsApp's policies",
    132008: "a parameter value is not valid",
    132012: "a parameter is not in the format the template expects",
    132015: "the template is paused for low quality",
    132016: "the template is disabled",
}


@dataclass(frozen=True)
class GraphError:
    """One Graph error: from a failed call's body, or from a `failed` status's `errors[0]`."""

    code: int
    title: str
    details: str = ""
    subcode: int = 0

    @property
    def detail(self) -> str:
        """What went wrong in a few words: Meta's details, else its title without the "(#code)" prefix."""
        return self.details or _CODE_PREFIX.sub("", self.title) or f"error {self.code}"

    @classmethod
    def from_json(cls, error: Mapping[str, Any]) -> GraphError:
        """From `{"code", "message" | "title", "error_subcode", "error_data": {"details"}}`."""
        code = error.get("code")
        subcode = error.get("error_subcode")
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        title = error.get("title") or error.get("message")
        return cls(
            code=code if isinstance(code, int) and not isinstance(code, bool) else 0,
            title=title if isinstance(title, str) else "",
            details=details if isinstance(details, str) else "",
            subcode=subcode if isinstance(subcode, int) and not isinstance(subcode, bool) else 0,
        )


def reason_of(error: GraphError) -> tuple[str, dict[str, str]]:
    """The status-text reason (and its arguments) a manager reads for a message Graph refused."""
    if error.code == WINDOW_CLOSED:
        return status_texts.WINDOW_CLOSED, {"platform": PLATFORM}
    if error.code == UNDELIVERABLE:
        return status_texts.RECIPIENT_UNDELIVERABLE, {"platform": PLATFORM}
    if error.code in TEMPLATE_CODES:
        detail = _TEMPLATE_DETAILS.get(error.code, error.detail)
        return status_texts.TEMPLATE_REFUSED, {"platform": PLATFORM, "detail": detail}
    if error.code in _RATE_LIMIT_PAUSES_S:  # only ever in a `failed` status: a refused call is retried
        return status_texts.SENDING_LIMITED, {"platform": PLATFORM}
    return status_texts.PLATFORM_REFUSED, {"platform": PLATFORM, "detail": error.detail}


def _envelope_error(response: httpx.Response) -> GraphError | None:
    try:
        data: object = response.json()
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    return GraphError.from_json(error) if isinstance(error, dict) else None


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def failure(operation: str, outcome: httpx.Response | Exception, token: str = "") -> BridgeError:
    """The one mapping of a failed Graph call onto libs.errors. Messages name the operation, never the
    URL, and no httpx exception is chained (its request would carry the Authorization header); an echo of
    the access `token` in Meta's text is masked."""
    where = f"whatsapp {operation}"
    if isinstance(outcome, httpx.TimeoutException):
        return TimedOutError(f"{where}: timed out ({type(outcome).__name__})")
    if isinstance(outcome, httpx.InvalidURL):
        return PermanentError(f"{where}: the configured Graph API base URL is invalid")
    if isinstance(outcome, Exception):
        return RetryableError(f"{where}: connection failed ({type(outcome).__name__})")

    status = outcome.status_code
    error = _envelope_error(outcome) or GraphError(code=0, title=f"HTTP {status}")
    if token and (token in error.title or token in error.details):
        error = GraphError(
            error.code, error.title.replace(token, "<token>"), error.details.replace(token, "<token>"), error.subcode
        )
    message = f"{where}: ({error.code}) {error.detail}"
    if error.code in _RATE_LIMIT_PAUSES_S or status == 429:
        count_rate_limited(PLATFORM)
        pause = retry_after(outcome) or _RATE_LIMIT_PAUSES_S.get(error.code, _HTTP_429_PAUSE_S)
        # Which limit it was decides whose sends wait (libs/messengers/whatsapp/pacing.py).
        limit = PAIR_RATE_REFUSED if error.code == PAIR_RATE_LIMIT else THROUGHPUT_REFUSED
        return RateLimitedError(message, retry_after=pause, code=limit)
    if status == 401 or (error.code in _TOKEN_CODES and status < 500):
        return CredentialRejectedError(f"{where}: the access token was rejected ({error.code} {error.detail})")
    if error.code in _PERMISSION_CODES:
        return CredentialRejectedError(f"{where}: the access token lacks a permission ({error.code} {error.detail})")
    if status >= 500 or error.code in _TRANSIENT_CODES:
        return RetryableError(message)
    if (error.code, error.subcode) == _UNKNOWN_OBJECT:
        return NotFoundError(message)
    reason, args = reason_of(error)
    if error.code == UNDELIVERABLE:
        return RecipientUnavailableError(message, reason=reason, reason_args=args)
    return PermanentError(message, reason=reason, reason_args=args)
