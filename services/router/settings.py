"""How a channel's chats land in the CRM: its Kommo source, the contact rule, the robot label.

Stored on the connection row; read from it into every command the router publishes, so kommo_sender
never has to ask, and a change applies from the next message on.
"""

from __future__ import annotations

from typing import Any, Final

from kommo_bridge.events.v1 import content_pb2, events_pb2
from kommo_bridge.router.v1 import router_pb2

from libs.errors import BadRequestError
from libs.messengers.registry import adapter_named, source_services
from services.router.connections import ConnectionRecord

CONTACT_RULES: Final = {
    "create": events_pb2.CONTACT_RULE_CREATE,
    "link_existing": events_pb2.CONTACT_RULE_LINK_EXISTING,
}
MAX_SOURCE_NAME: Final = 200
MAX_ROBOT_LABEL: Final = 64


def source_spec(record: ConnectionRecord) -> events_pb2.SourceSpec:
    """The channel's Kommo source, with what its messenger declares there (`services`, by its adapter)."""
    return events_pb2.SourceSpec(
        external_id=record.source_external_id,
        name=record.source_name or record.display_name or record.source_external_id,
        pipeline_id=record.pipeline_id,
        services=source_services(adapter_named(record.platform), record.external_id, record.display_name),
    )


def contact_rule(record: ConnectionRecord) -> events_pb2.ContactRule.ValueType:
    return CONTACT_RULES.get(record.contact_rule, events_pb2.CONTACT_RULE_CREATE)


def settings_pb(record: ConnectionRecord) -> router_pb2.ChannelSettings:
    return router_pb2.ChannelSettings(
        source_name=source_spec(record).name,
        pipeline_id=record.pipeline_id,
        contact_rule=contact_rule(record),
        update_profiles=record.update_profiles,
        robot_label=record.robot_label,
    )


def settings_changes(settings: router_pb2.ChannelSettings) -> dict[str, Any]:
    """The connection columns a (partial) settings message changes; invalid values are a clear 400."""
    changes: dict[str, Any] = {}
    if settings.HasField("source_name"):
        name = settings.source_name.strip()
        if len(name) > MAX_SOURCE_NAME:
            raise BadRequestError(
                f"source_name must be at most {MAX_SOURCE_NAME} characters", code="invalid_source_name"
            )
        changes["source_name"] = name
    if settings.HasField("pipeline_id"):
        if settings.pipeline_id < 0:
            raise BadRequestError(
                "pipeline_id must be a Kommo pipeline id (or 0 for the main pipeline)", code="invalid_pipeline"
            )
        changes["pipeline_id"] = settings.pipeline_id
    if settings.HasField("contact_rule"):
        names = {value: name for name, value in CONTACT_RULES.items()}
        if settings.contact_rule not in names:
            raise BadRequestError(f"contact_rule must be one of {sorted(CONTACT_RULES)}", code="invalid_contact_rule")
        changes["contact_rule"] = names[settings.contact_rule]
    if settings.HasField("update_profiles"):
        changes["update_profiles"] = settings.update_profiles
    if settings.HasField("robot_label"):
        label = settings.robot_label.strip()
        if len(label) > MAX_ROBOT_LABEL or not label.isprintable():
            raise BadRequestError(
                f"robot_label must be at most {MAX_ROBOT_LABEL} printable characters", code="invalid_robot_label"
            )
        changes["robot_label"] = label
    return changes


def labelled(content: content_pb2.Content, label: str) -> content_pb2.Content:
    """The content as a client sees it from Kommo's bot: text and captions start with the label."""
    if not label:
        return content
    marked = content_pb2.Content()
    marked.CopyFrom(content)
    if marked.HasField("text"):
        marked.text.body = f"{label} {marked.text.body}"
    elif marked.HasField("media"):
        marked.media.caption = f"{label} {marked.media.caption}".rstrip()
    return marked
