"""`POST /webhooks/kommo-account/{scope_id}/{token}`: Kommo's account webhooks (libs/kommo/account_hooks.py).

The token in the path is the only proof Kommo gives (its account webhooks carry no signature): a wrong one
is refused (403) and nothing published. A review request (`add_chat_template_review`) becomes a
`ChatTemplateReviewRequested` for kommo_sender, which reads each named template back from Kommo before it
acts. Kommo wants an answer within 2 s and retries a failure, so the hook is acknowledged once published.
"""

from __future__ import annotations

import hashlib
import logging

from kommo_bridge.events.v1 import events_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from libs.bus import Publisher, Stream
from libs.errors import AuthError, BridgeError
from libs.kommo.account_hooks import review_request, token_matches
from services.gateway.credentials import GatewayCredentials
from services.gateway.webhooks import Webhooks, error_response, read_body

log = logging.getLogger(__name__)


class KommoAccountHooks:
    def __init__(self, webhooks: Webhooks, credentials: GatewayCredentials, publisher: Publisher) -> None:
        self._webhooks = webhooks
        self._credentials = credentials
        self._publisher = publisher

    async def receive(self, request: Request) -> Response:
        return await self._webhooks.observed("kommo_account", self._receive(request))

    async def _receive(self, request: Request) -> Response:
        scope_id = request.path_params["scope_id"]
        try:
            body = await read_body(request)
            channel = await self._credentials.channel()
            if not token_matches(channel.channel_secret, scope_id, request.path_params["token"]):
                raise AuthError("kommo account hook: the destination token is not this scope's")
            await self._credentials.check_scope(scope_id)
            asked = review_request(body)
            if not asked.template_ids:
                return JSONResponse({"ok": True, "ignored": True})
            command = events_pb2.ChatTemplateReviewRequested(
                scope_id=scope_id, kommo_account_id=asked.kommo_account_id, kommo_template_ids=asked.template_ids
            )
            msg_id = f"template-review-request:{scope_id}:{hashlib.sha256(body).hexdigest()}"
            await self._publisher.publish(Stream.CRM_COMMANDS, f"template-reviews:{scope_id}", command, msg_id)
            log.info(
                "kommo template review requested", extra={"scope_id": scope_id, "templates": len(asked.template_ids)}
            )
        except BridgeError as exc:
            self._webhooks.log_refusal("kommo account hook refused", exc, scope_id=scope_id)
            return error_response(exc)
        return JSONResponse({"ok": True})
