"""The install redirect and the uninstall hook: the admin-facing end of Kommo's OAuth flow.

Pages here are read by people (an admin who just clicked Install), so every outcome gets a short,
plain page; the work itself is done by the auth service.
"""

from __future__ import annotations

import html
import logging

from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from libs.errors import BridgeError, http_status
from libs.rpc import call

log = logging.getLogger(__name__)

# Code exchange, account lookup and channel connect: three calls to Kommo.
INSTALL_DEADLINE_S = 20.0

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Kommo Bridge</title>
<style>
 body{{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f6fb;color:#1d2433;
   display:grid;place-items:center;min-height:100vh}}
 main{{background:#fff;border-radius:14px;box-shadow:0 6px 24px rgba(20,30,60,.08);padding:32px 36px;max-width:440px}}
 h1{{font-size:20px;margin:0 0 8px}} p{{margin:0;color:#4a5468}} .mark{{font-size:28px;margin-bottom:12px}}
</style></head>
<body><main><div class="mark" aria-hidden="true">{mark}</div><h1>{title}</h1><p>{body}</p></main></body></html>"""


def page(title: str, body: str, *, ok: bool, status: int = 200) -> HTMLResponse:
    mark = "✓" if ok else "⚠"
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=html.escape(body), mark=mark), status_code=status)


class Installs:
    def __init__(self, auth: auth_pb2_grpc.AuthServiceAsyncStub) -> None:
        self._auth = auth

    async def start(self, request: Request) -> Response:
        """GET /oauth/install: send the admin to Kommo with a state only we could have issued."""
        try:
            link = await call(self._auth.CreateInstallLink, auth_pb2.CreateInstallLinkRequest())
        except BridgeError as exc:
            log.warning("install link failed", extra={"error_type": type(exc).__name__})
            return page("Installation is not available", str(exc), ok=False, status=http_status(exc))
        return RedirectResponse(link.url, status_code=302)

    async def callback(self, request: Request) -> Response:
        """GET /oauth/callback: Kommo's redirect after the admin allowed (or denied) access."""
        query = request.query_params
        if query.get("error"):
            log.info("install denied by the admin", extra={"reason": query.get("error", "")[:50]})
            return page(
                "Installation cancelled",
                "Access was not granted, so nothing was installed. You can start again at any time.",
                ok=False,
            )
        install = auth_pb2.CompleteInstallRequest(
            code=query.get("code", ""),
            referer=query.get("referer", ""),
            client_id=query.get("client_id", ""),
            state=query.get("state", ""),
            from_widget=query.get("from_widget", "") not in ("", "0"),
        )
        try:
            installation = await call(self._auth.CompleteInstall, install, deadline_s=INSTALL_DEADLINE_S)
        except BridgeError as exc:
            status = http_status(exc)
            log.warning("install failed", extra={"error_type": type(exc).__name__, "status": status})
            detail = str(exc) if status < 500 else "Kommo or the bridge did not answer in time. Please try again."
            return page("Installation failed", detail, ok=False, status=status)
        return page(
            "Kommo Bridge is installed",
            f"The chat channel is connected to {installation.domain or 'your account'}. "
            "You can close this window and connect your messengers in the bridge settings.",
            ok=True,
        )

    async def uninstall(self, request: Request) -> Response:
        """GET /oauth/uninstall: Kommo's signed hook after the integration was removed from an account."""
        query = request.query_params
        account = query.get("account_id", "")
        if not account.isdigit():
            return JSONResponse({"ok": False, "error": "account_id must be a number"}, status_code=400)
        hook = auth_pb2.UninstallRequest(
            client_uuid=query.get("client_uuid", ""),
            kommo_account_id=int(account),
            signature=query.get("signature", ""),
        )
        try:
            await call(self._auth.Uninstall, hook, deadline_s=INSTALL_DEADLINE_S)
        except BridgeError as exc:
            status = http_status(exc)
            message = str(exc) if status < 500 else "temporarily unavailable, please retry"
            return JSONResponse({"ok": False, "error": message}, status_code=status)
        return JSONResponse({"ok": True})
