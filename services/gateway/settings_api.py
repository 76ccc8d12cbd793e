"""The settings window's JSON API: what an account admin sees and changes, for their account only.

Every call carries the session cookie (`settings_access.py`); the account comes from the session,
never from the request, and a channel is touched only after checking it belongs to that account (a
channel of another account answers 404, as if it did not exist). The work is done by the auth and
router services. Every error answers `{"ok": false, "error", "code"}`: a sentence an admin can act on,
in English, and a stable code the window shows in the admin's language (libs.errors.error_code).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import events_pb2
from kommo_bridge.router.v1 import router_pb2, router_pb2_grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from libs.errors import BadRequestError, BridgeError, NotFoundError, error_code, http_status
from libs.messengers.registry import MessengerAdapter, adapter_named, platform_name
from libs.rpc import call
from libs.secret_names import MESSENGER_APP_SECRET
from services.gateway.settings_access import SettingsAccess

log = logging.getLogger(__name__)

CONNECT_DEADLINE_S = 20.0
# Each platform asked with a few seconds' budget, all at once.
HEALTH_DEADLINE_S = 10.0
CHANNEL_ACTIONS = frozenset({"pause", "resume", "token", "webhook"})
CONTACT_RULES = {"create": events_pb2.CONTACT_RULE_CREATE, "link_existing": events_pb2.CONTACT_RULE_LINK_EXISTING}
RULE_NAMES = {value: name for name, value in CONTACT_RULES.items()}
STATES = {
    router_pb2.CONNECTION_STATE_ACTIVE: "active",
    router_pb2.CONNECTION_STATE_PAUSED: "paused",
    router_pb2.CONNECTION_STATE_DISCONNECTED: "disconnected",
}
WEBHOOK = {
    router_pb2.WEBHOOK_STATUS_REGISTERED: "registered",
    router_pb2.WEBHOOK_STATUS_NOT_SET: "not_set",
    router_pb2.WEBHOOK_STATUS_ELSEWHERE: "elsewhere",
}


def channel_json(connection: router_pb2.Connection) -> dict[str, Any]:
    settings = connection.settings
    return {
        "id": connection.connection_id,
        "platform": platform_name(connection.platform),
        "name": connection.display_name,
        "external_id": connection.external_id,
        "state": STATES.get(connection.state, "unknown"),
        "webhook_url": connection.webhook_url,
        "source_external_id": connection.source_external_id,
        "conversations": connection.conversations,
        "closed_conversations": connection.closed_conversations,
        "messages_today": connection.messages_today,
        "last_message_at_ms": connection.last_message_at_ms,
        "held_messages": connection.held_messages,
        "paused_at_ms": connection.paused_at_ms,
        "settings": {
            "source_name": settings.source_name,
            "pipeline_id": settings.pipeline_id,
            "contact_rule": RULE_NAMES.get(settings.contact_rule, "create"),
            "update_profiles": settings.update_profiles,
            "robot_label": settings.robot_label,
        },
    }


def health_json(health: router_pb2.ChannelHealth) -> dict[str, Any]:
    return {
        "id": health.connection_id,
        "webhook": WEBHOOK.get(health.webhook, "unknown"),
        "pending_updates": health.pending_updates,
        "last_error_at_ms": health.last_error_at_ms,
        "last_error": health.last_error_message,
        "token_rejected": health.token_rejected,
        "unreachable": health.unreachable,
        "reason": health.reason,
        "checked_at_ms": health.checked_at_ms,
    }


def settings_from_json(data: dict[str, Any]) -> router_pb2.ChannelSettings:
    """Only the fields given; a wrong type names the field (the router checks the values)."""
    settings = router_pb2.ChannelSettings()
    unknown = set(data) - {"source_name", "pipeline_id", "contact_rule", "update_profiles", "robot_label"}
    if unknown:
        raise BadRequestError(f"unknown settings: {', '.join(sorted(unknown))}", code="unknown_setting")
    for key in ("source_name", "robot_label"):
        if key in data:
            if not isinstance(data[key], str):
                raise BadRequestError(f"{key} must be text", code=f"invalid_{key}")
            setattr(settings, key, data[key])
    if "pipeline_id" in data:
        if isinstance(data["pipeline_id"], bool) or not isinstance(data["pipeline_id"], int):
            raise BadRequestError(
                "pipeline_id must be a pipeline's number (0 for the main pipeline)", code="invalid_pipeline"
            )
        settings.pipeline_id = data["pipeline_id"]
    if "contact_rule" in data:
        if data["contact_rule"] not in CONTACT_RULES:
            raise BadRequestError("contact_rule must be 'create' or 'link_existing'", code="invalid_contact_rule")
        settings.contact_rule = CONTACT_RULES[data["contact_rule"]]
    if "update_profiles" in data:
        if not isinstance(data["update_profiles"], bool):
            raise BadRequestError("update_profiles must be true or false", code="invalid_update_profiles")
        settings.update_profiles = data["update_profiles"]
    return settings


async def json_body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise BadRequestError("the body must be a JSON object", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequestError("the body must be a JSON object", code="invalid_json")
    return data


class SettingsApi:
    def __init__(
        self,
        access: SettingsAccess,
        auth: auth_pb2_grpc.AuthServiceAsyncStub,
        router: router_pb2_grpc.RouterServiceAsyncStub,
    ) -> None:
        self._access = access
        self._auth = auth
        self._router = router

    def _refused(self, error: BridgeError, request: Request) -> Response:
        status, code = http_status(error), error_code(error)
        log.info(
            "settings call refused",
            extra={"path": request.url.path, "error_type": type(error).__name__, "code": code},
        )
        # A platform out of reach is said as such; other failures of ours are not detailed.
        detailed = status < 500 or code.endswith("_unreachable")
        message = str(error) if detailed else "The bridge is busy right now; please try again in a moment."
        return JSONResponse(
            {"ok": False, "error": message, "code": code}, status_code=status, headers={"Cache-Control": "no-store"}
        )

    @staticmethod
    def _ok(body: dict[str, Any], status: int = 200) -> Response:
        return JSONResponse({"ok": True, **body}, status_code=status, headers={"Cache-Control": "no-store"})

    async def _own_channel(self, account_id: str, connection_id: str) -> router_pb2.Connection:
        try:
            connection = await call(
                self._router.GetConnection, router_pb2.GetConnectionRequest(connection_id=connection_id)
            )
        except NotFoundError:
            connection = None
        if connection is None or connection.account_id != account_id:
            raise NotFoundError("this channel does not exist (it may have been removed)", code="channel_not_found")
        return connection

    async def overview(self, request: Request) -> Response:
        """`GET /settings/api/overview`: the status header, the channels and the pipelines, at once."""
        try:
            session = await self._access.current(request)
            account_id = session.account_id
            installation, connections, pipelines = await asyncio.gather(
                call(self._auth.GetInstallation, auth_pb2.GetInstallationRequest(account_id=account_id)),
                call(self._router.ListConnections, router_pb2.ListConnectionsRequest(account_id=account_id)),
                self._pipelines(account_id),
            )
            reauthorize = ""
            if installation.state != "active":
                reauthorize = (await call(self._auth.CreateInstallLink, auth_pb2.CreateInstallLinkRequest())).url
        except BridgeError as exc:
            return self._refused(exc, request)
        channels = [channel_json(c) for c in connections.connections]
        active = [c for c in channels if c["state"] != "disconnected"]  # a paused channel is still connected
        return self._ok(
            {
                "account": {
                    "account_id": account_id,
                    "domain": installation.domain,
                    "state": installation.state,
                    "token": {"kind": installation.token_kind, "expires_at_ms": installation.token_expires_at_ms},
                    "last_error": installation.last_error,
                    "reauthorize_url": reauthorize,
                },
                "stats": {
                    "messages_today": sum(c["messages_today"] for c in channels),
                    "channels": len(active),
                    "closed_conversations": sum(c["closed_conversations"] for c in active),
                },
                "channels": channels,
                "pipelines": pipelines[0],
                "pipelines_error": pipelines[1],
            }
        )

    async def _pipelines(self, account_id: str) -> tuple[list[dict[str, Any]], str]:
        """The pipelines, or why they cannot be listed (the rest of the window still works)."""
        try:
            found = await call(self._auth.ListPipelines, auth_pb2.ListPipelinesRequest(account_id=account_id))
        except BridgeError as exc:
            log.warning("pipelines unavailable", extra={"account_id": account_id, "error_type": type(exc).__name__})
            return [], "Kommo's pipelines could not be loaded; the main pipeline is used until they can."
        return [{"id": p.id, "name": p.name, "is_main": p.is_main} for p in found.pipelines], ""

    async def add_channel(self, request: Request) -> Response:
        """`POST /settings/api/channels` `{"platform", "token"}` (WhatsApp: `{"platform", "phone_number_id",
        "waba_id", "token", "app_secret"}`): checked live with the platform."""
        try:
            session = await self._access.current(request)
            data = await json_body(request)
            platform, token = data.get("platform"), data.get("token")
            if not isinstance(platform, str) or not isinstance(token, str) or not token.strip():
                raise BadRequestError("choose a messenger and paste its token", code="token_missing")
            adapter = _messenger(platform)
            credential, app_secret = _channel_credential(adapter, token.strip(), data)
            connection = await call(
                self._router.ConnectChannel,
                router_pb2.ConnectChannelRequest(
                    account_id=session.account_id, platform=adapter.platform, token=credential, app_secret=app_secret
                ),
                deadline_s=CONNECT_DEADLINE_S,
            )
        except BridgeError as exc:
            return self._refused(exc, request)
        log.info("channel added from the settings window", extra={"connection_id": connection.connection_id})
        return self._ok({"channel": channel_json(connection)}, status=201)

    async def change_channel(self, request: Request) -> Response:
        """`PATCH /settings/api/channels/{id}` with some settings, `DELETE` to remove the channel."""
        try:
            session = await self._access.current(request)
            connection_id = request.path_params["channel_id"]
            await self._own_channel(session.account_id, connection_id)
            if request.method == "DELETE":
                connection = await call(
                    self._router.DisconnectChannel, router_pb2.DisconnectChannelRequest(connection_id=connection_id)
                )
            else:
                settings = settings_from_json(await json_body(request))
                connection = await call(
                    self._router.UpdateChannelSettings,
                    router_pb2.UpdateChannelSettingsRequest(connection_id=connection_id, settings=settings),
                )
        except BridgeError as exc:
            return self._refused(exc, request)
        return self._ok({"channel": channel_json(connection)})

    async def channel_action(self, request: Request) -> Response:
        """`POST /settings/api/channels/{id}/{pause|resume|token|webhook}`: pause or resume the channel,
        give it a new token `{"token"}` (the same bot's, checked live; WhatsApp: the new access token, and
        optionally `"app_secret"`, for the same number), register its webhook again."""
        action = request.path_params["action"]
        try:
            if action not in CHANNEL_ACTIONS:
                raise NotFoundError(f"channels have no action {action!r}")
            session = await self._access.current(request)
            connection_id = request.path_params["channel_id"]
            await self._own_channel(session.account_id, connection_id)
            if action == "pause":
                connection = await call(
                    self._router.PauseChannel, router_pb2.PauseChannelRequest(connection_id=connection_id)
                )
            elif action == "resume":
                connection = await call(
                    self._router.ResumeChannel, router_pb2.ResumeChannelRequest(connection_id=connection_id)
                )
            elif action == "token":
                data = await json_body(request)
                token, app_secret = data.get("token"), data.get("app_secret", "")
                if not isinstance(token, str) or not token.strip():
                    raise BadRequestError("paste the new token", code="token_missing")
                if not isinstance(app_secret, str):
                    raise BadRequestError("app_secret must be a string", code="invalid_app_secret")
                connection = await call(
                    self._router.ReplaceChannelToken,
                    router_pb2.ReplaceChannelTokenRequest(
                        connection_id=connection_id, token=token.strip(), app_secret=app_secret.strip()
                    ),
                    deadline_s=CONNECT_DEADLINE_S,
                )
            else:
                connection = await call(
                    self._router.RegisterWebhook,
                    router_pb2.RegisterWebhookRequest(connection_id=connection_id),
                    deadline_s=CONNECT_DEADLINE_S,
                )
        except BridgeError as exc:
            return self._refused(exc, request)
        log.info("channel changed from the settings window", extra={"connection_id": connection_id, "action": action})
        return self._ok({"channel": channel_json(connection)})

    async def health(self, request: Request) -> Response:
        """`GET /settings/api/health[?fresh=1]`: what the platforms say about each channel (asked after
        the window's first view: it waits on the platforms)."""
        try:
            session = await self._access.current(request)
            found = await call(
                self._router.ListChannelHealth,
                router_pb2.ListChannelHealthRequest(
                    account_id=session.account_id, fresh=request.query_params.get("fresh") == "1"
                ),
                deadline_s=HEALTH_DEADLINE_S,
            )
        except BridgeError as exc:
            return self._refused(exc, request)
        return self._ok({"channels": [health_json(h) for h in found.channels]})


def _channel_credential(adapter: MessengerAdapter, token: str, data: dict[str, Any]) -> tuple[str, str]:
    """The credential ConnectChannel takes, and the platform app's secret where webhooks are signed with
    one. WhatsApp's form gives the number's and the business account's ids beside the access token."""
    if adapter.webhook_secret_kind != MESSENGER_APP_SECRET:
        return token, ""
    fields = {key: data.get(key) for key in ("phone_number_id", "waba_id", "app_secret")}
    given = {key: value.strip() for key, value in fields.items() if isinstance(value, str) and value.strip()}
    if "phone_number_id" not in given or "waba_id" not in given:
        raise BadRequestError("give the phone number id and the business account id", code="whatsapp_ids_missing")
    if "app_secret" not in given:
        raise BadRequestError("paste the app secret", code="app_secret_missing")
    return f"{given['phone_number_id']}:{given['waba_id']}:{token}", given["app_secret"]


def _messenger(name: str) -> MessengerAdapter:
    try:
        return adapter_named(name)
    except NotFoundError:
        raise BadRequestError(f"the bridge does not connect {name!r} (yet)", code="unknown_messenger") from None
