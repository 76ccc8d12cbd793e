"""Who may open the settings window: Kommo's one-time token in, a session cookie out.

The Kommo widget calls `POST /settings/api/session` with `X-Auth-Token` (from another origin, the
account's Kommo domain, so CORS is answered for Kommo domains only) and the user's language in its body,
and gets the window's address with a single-use ticket (and that language) in its fragment (fragments
never reach logs or referrers). The page posts the
ticket to `/settings/api/enter` and gets its session as an HttpOnly cookie (and in the body, for
browsers that refuse a cookie inside Kommo's iframe: then it travels in the `X-Bridge-Session` header);
every other settings call carries one of the two. Tokens, tickets and sessions are checked by the auth service.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from libs.errors import BadRequestError, BridgeError, MissingCredentialError, error_code, http_status
from libs.rpc import call
from libs.status_texts import supported_language

log = logging.getLogger(__name__)

COOKIE = "bridge_settings"
SESSION_HEADER = "x-bridge-session"
ALLOWED_HEADERS = "X-Auth-Token, Content-Type"
MAX_LANGUAGE_TAG = 35  # the longest BCP 47 tag worth passing on


class SettingsAccess:
    def __init__(
        self, auth: auth_pb2_grpc.AuthServiceAsyncStub, public_url: str, kommo_domains: tuple[str, ...]
    ) -> None:
        self._auth = auth
        self._public_url = public_url.rstrip("/")
        self._secure = public_url.startswith("https://")
        self._kommo_domains = kommo_domains

    def _cors(self, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin", "")
        host = (urlsplit(origin).hostname or "").lower()
        if not any(host == d or host.endswith("." + d) for d in self._kommo_domains):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }

    def _refused(self, error: BridgeError, request: Request, headers: dict[str, str] | None = None) -> Response:
        status, code = http_status(error), error_code(error)
        log.info(
            "settings access refused",
            extra={"path": request.url.path, "error_type": type(error).__name__, "code": code},
        )
        message = str(error) if status < 500 else "temporarily unavailable, please retry"
        return JSONResponse({"ok": False, "error": message, "code": code}, status_code=status, headers=headers)

    async def session(self, request: Request) -> Response:
        """`POST /settings/api/session` (and its CORS preflight), called by the Kommo widget."""
        cors = self._cors(request)
        if request.method == "OPTIONS":
            return Response(status_code=204 if cors else 403, headers=cors)
        try:
            token = request.headers.get("x-auth-token", "").strip()
            if not token:
                raise MissingCredentialError(
                    "the X-Auth-Token header is missing: open the settings from Kommo", code="kommo_token_missing"
                )
            language = await _user_language(request)
            ticket = await call(
                self._auth.OpenSettingsSession,
                auth_pb2.OpenSettingsSessionRequest(one_time_token=token, language=language),
            )
        except BridgeError as exc:
            return self._refused(exc, request, cors)
        url = f"{self._public_url}/settings/#ticket={ticket.ticket}"
        window_language = supported_language(language)
        if window_language:
            url += f"&lang={window_language}"
        return JSONResponse({"ok": True, "url": url}, headers={**cors, "Cache-Control": "no-store"})

    async def enter(self, request: Request) -> Response:
        """`POST /settings/api/enter` `{"ticket"}`: the page trades its ticket for a session cookie."""
        try:
            try:
                data = await request.json()
            except ValueError:
                raise BadRequestError('the body must be JSON: {"ticket": "…"}', code="invalid_json") from None
            ticket = data.get("ticket") if isinstance(data, dict) else None
            if not isinstance(ticket, str) or not ticket:
                raise MissingCredentialError("no ticket: open the settings from Kommo", code="ticket_missing")
            session = await call(self._auth.RedeemSettingsTicket, auth_pb2.RedeemSettingsTicketRequest(ticket=ticket))
        except BridgeError as exc:
            return self._refused(exc, request)
        # The session also comes back in the body: inside Kommo's iframe a browser may refuse the cookie
        # as third-party (Safari, and Chrome with third-party cookies off), and the page then keeps the
        # session in memory only and sends it as the X-Bridge-Session header.
        body = {"ok": True, **_account(session), "session": session.session}
        response = JSONResponse(body, headers={"Cache-Control": "no-store"})
        max_age = max(0, int(session.expires_at_ms / 1000 - _now()))
        # The window lives in an iframe on the Kommo domain: a cross-site cookie needs SameSite=None + Secure.
        response.set_cookie(
            COOKIE,
            session.session,
            max_age=max_age,
            path="/settings",
            httponly=True,
            secure=self._secure,
            samesite="none" if self._secure else "lax",
        )
        return response

    async def current(self, request: Request) -> auth_pb2.SettingsSession:
        """The session of a settings call, or an AuthError (the caller answers it)."""
        session = request.headers.get(SESSION_HEADER, "") or request.cookies.get(COOKIE, "")
        if not session:
            raise MissingCredentialError("no settings session: open the settings from Kommo", code="session_missing")
        return await call(self._auth.GetSettingsSession, auth_pb2.GetSettingsSessionRequest(session=session))

    async def me(self, request: Request) -> Response:
        """`GET /settings/api/me`: whose settings these are."""
        try:
            session = await self.current(request)
        except BridgeError as exc:
            return self._refused(exc, request)
        return JSONResponse({"ok": True, **_account(session)}, headers={"Cache-Control": "no-store"})


async def _user_language(request: Request) -> str:
    """The Kommo user's language the widget sends (`{"lang": "es"}`); "" when it sent none. Opening the
    window never fails over it: a body that is not such JSON just names no language."""
    try:
        data = await request.json()
    except ValueError:
        return ""
    language = data.get("lang") if isinstance(data, dict) else None
    return language[:MAX_LANGUAGE_TAG] if isinstance(language, str) else ""


def _account(session: auth_pb2.SettingsSession) -> dict[str, object]:
    return {
        "account_id": session.account_id,
        "domain": session.domain,
        "kommo_user_id": session.kommo_user_id,
        "expires_at_ms": session.expires_at_ms,
    }


def _now() -> float:
    return time.time()
