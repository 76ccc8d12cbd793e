"""The amojo emulator's own `/_emulator/…` routes, beside the shared requests/faults ones: register
channels, inspect chats, messages, statuses, typing, reactions and hooks, and make a manager reply,
react, type or edit (each a hook)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.errors import BadRequestError, BridgeError, NotFoundError
from libs.kommo.emulator.manager_live import manager_edits, manager_reacts, manager_types
from libs.kommo.emulator.records import HookResult
from libs.kommo.emulator.state import AmojoState
from libs.kommo.emulator.validation import bool_field, int_field, json_object, number_field, obj_field, str_field


def _location(data: dict[str, Any]) -> dict[str, float] | None:
    location = obj_field(data, "location", "")
    if location is None:
        return None
    return {"lon": number_field(location, "lon", "location"), "lat": number_field(location, "lat", "location")}


def _contact(data: dict[str, Any]) -> dict[str, str] | None:
    contact = obj_field(data, "contact", "")
    if contact is None:
        return None
    return {
        "name": str_field(contact, "name", "contact", required=True),
        "phone": str_field(contact, "phone", "contact", required=True),
    }


def _template(data: dict[str, Any]) -> dict[str, Any] | None:
    """A chat template the manager picked, as the hook carries it (§9): `{id, external_id, content,
    params[{key, value}]}`."""
    template = obj_field(data, "template", "")
    if template is None:
        return None
    params = template.get("params") or []
    if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
        raise BadRequestError("template.params must be an array of {key, value} objects")
    out: dict[str, Any] = {
        "id": int_field(template, "id", "template", required=True),
        "content": str_field(template, "content", "template", required=True),
        "params": [
            {"key": str_field(p, "key", "template.params[]", required=True), "value": str_field(p, "value", "")}
            for p in params
        ],
    }
    external_id = str_field(template, "external_id", "template")
    if external_id:  # Kommo's own (amocrm) templates have none
        out["external_id"] = external_id
    return out


def amojo_control_routes(state: AmojoState) -> list[Route]:
    """`/_emulator/…`: channels, chats, messages, statuses, typing, hooks, manager messages."""

    async def channels(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"channels": [c.to_json() for c in state.channels()]})
        try:
            data = json_object(await request.body())
            channel = state.register_channel(
                str_field(data, "channel_id", "", required=True),
                str_field(data, "secret", "", required=True),
                str_field(data, "hook_url", ""),
                str_field(data, "code", ""),
            )
        except BridgeError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"channel": channel.to_json()}, status_code=201)

    async def connections(request: Request) -> Response:
        return JSONResponse({"connections": [c.to_json() for c in state.connections()]})

    async def chats(request: Request) -> Response:
        scope_id = request.query_params.get("scope_id", "")
        return JSONResponse({"chats": [c.to_json() for c in state.chats(scope_id)]})

    async def messages(request: Request) -> Response:
        conversation_id = request.query_params.get("conversation_id", "")
        scope_id = request.query_params.get("scope_id", "")
        return JSONResponse({"messages": [m.to_json() for m in state.messages(conversation_id, scope_id)]})

    async def statuses(request: Request) -> Response:
        msgid = request.query_params.get("msgid", "")
        if msgid:
            return JSONResponse({"statuses": [s.to_json() for s in state.statuses(msgid)]})
        grouped = state.all_statuses()
        return JSONResponse({"statuses": {k: [s.to_json() for s in v] for k, v in grouped.items()}})

    async def typing(request: Request) -> Response:
        return JSONResponse({"typing": [t.to_json() for t in state.typing_events()]})

    async def hooks(request: Request) -> Response:
        return JSONResponse({"hooks": [h.to_json() for h in state.hook_results()]})

    async def manager_messages(request: Request) -> Response:
        try:
            data = json_object(await request.body())
            result = await state.send_manager_message(
                str_field(data, "scope_id", "", required=True),
                str_field(data, "conversation_id", ""),
                str_field(data, "text", ""),
                message_type=str_field(data, "type", "") or "text",
                media=str_field(data, "media", ""),
                file_name=str_field(data, "file_name", ""),
                file_size=int_field(data, "file_size", "") or 0,
                sticker_id=str_field(data, "sticker_id", ""),
                location=_location(data),
                contact=_contact(data),
                manager_id=str_field(data, "manager_id", ""),
                reply_to=str_field(data, "reply_to", ""),
                media_group_id=str_field(data, "media_group_id", ""),
                template=_template(data),
                markup=obj_field(data, "markup", ""),
                kommo_chat_id=str_field(data, "kommo_chat_id", ""),
                phone=str_field(data, "phone", ""),
                source_external_id=str_field(data, "source_external_id", ""),
            )
        except NotFoundError as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        except BridgeError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"hook": result.to_json()})

    async def reactions(request: Request) -> Response:
        return JSONResponse({"reactions": [r.to_json() for r in state.reactions()]})

    async def hook_answer(make: Callable[[dict[str, Any]], Awaitable[HookResult]], request: Request) -> Response:
        try:
            result = await make(json_object(await request.body()))
        except NotFoundError as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        except BridgeError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"hook": result.to_json()})

    async def manager_reactions(request: Request) -> Response:
        """A manager reacts: `{kommo_msgid, emoji, removed?, manager_id?}` → the reaction hook."""

        async def make(data: dict[str, Any]) -> HookResult:
            return await manager_reacts(
                state,
                str_field(data, "kommo_msgid", "", required=True),
                str_field(data, "emoji", ""),
                removed=bool_field(data, "removed", ""),
                manager_id=str_field(data, "manager_id", ""),
            )

        return await hook_answer(make, request)

    async def manager_typing(request: Request) -> Response:
        """A manager types: `{scope_id, conversation_id, manager_id?, late_by_s?}` → the typing hook."""

        async def make(data: dict[str, Any]) -> HookResult:
            return await manager_types(
                state,
                str_field(data, "scope_id", "", required=True),
                str_field(data, "conversation_id", "", required=True),
                str_field(data, "manager_id", ""),
                late_by_s=int_field(data, "late_by_s", "") or 0,
            )

        return await hook_answer(make, request)

    async def manager_message_edits(request: Request) -> Response:
        """A manager changes a message: `{kommo_msgid, text}` → its message hook again, new text."""

        async def make(data: dict[str, Any]) -> HookResult:
            return await manager_edits(
                state, str_field(data, "kommo_msgid", "", required=True), str_field(data, "text", "", required=True)
            )

        return await hook_answer(make, request)

    c = "/_emulator/"
    return [
        Route(c + "channels", channels, methods=["GET", "POST"]),
        Route(c + "connections", connections, methods=["GET"]),
        Route(c + "chats", chats, methods=["GET"]),
        Route(c + "messages", messages, methods=["GET"]),
        Route(c + "statuses", statuses, methods=["GET"]),
        Route(c + "typing", typing, methods=["GET"]),
        Route(c + "hooks", hooks, methods=["GET"]),
        Route(c + "manager_messages", manager_messages, methods=["POST"]),
        Route(c + "reactions", reactions, methods=["GET"]),
        Route(c + "manager_reactions", manager_reactions, methods=["POST"]),
        Route(c + "manager_typing", manager_typing, methods=["POST"]),
        Route(c + "manager_edits", manager_message_edits, methods=["POST"]),
    ]
