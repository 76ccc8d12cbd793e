"""Channel settings: partial updates, clear refusals, and how the robot label marks content."""

from __future__ import annotations

import pytest
from kommo_bridge.events.v1 import content_pb2, events_pb2
from kommo_bridge.router.v1 import router_pb2

from libs.errors import BadRequestError
from services.router.conversations import merged_profile
from services.router.settings import labelled, settings_changes


def test_only_the_fields_given_change() -> None:
    assert settings_changes(router_pb2.ChannelSettings()) == {}
    changes = settings_changes(
        router_pb2.ChannelSettings(
            source_name="  Telegram shop  ",
            pipeline_id=0,
            contact_rule=events_pb2.CONTACT_RULE_LINK_EXISTING,
            update_profiles=False,
            robot_label="",
        )
    )
    assert changes == {
        "source_name": "Telegram shop",
        "pipeline_id": 0,
        "contact_rule": "link_existing",
        "update_profiles": False,
        "robot_label": "",
    }


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        (router_pb2.ChannelSettings(pipeline_id=-1), "pipeline_id"),
        (router_pb2.ChannelSettings(contact_rule=events_pb2.CONTACT_RULE_UNSPECIFIED), "contact_rule"),
        (router_pb2.ChannelSettings(source_name="x" * 201), "source_name"),
        (router_pb2.ChannelSettings(robot_label="bo\nt"), "robot_label"),
        (router_pb2.ChannelSettings(robot_label="b" * 65), "robot_label"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(settings: router_pb2.ChannelSettings, fragment: str) -> None:
    with pytest.raises(BadRequestError, match=fragment):
        settings_changes(settings)


def test_the_robot_label_starts_texts_and_captions() -> None:
    text = content_pb2.Content(text=content_pb2.Text(body="Hello"))
    assert labelled(text, "🤖").text.body == "🤖 Hello"
    assert text.text.body == "Hello"  # the original is left alone
    photo = content_pb2.Content(media=content_pb2.Media(kind=content_pb2.MEDIA_KIND_PICTURE, file_ref="x"))
    assert labelled(photo, "[Bot]").media.caption == "[Bot]"
    location = content_pb2.Content(location=content_pb2.Location(lat=1.0, lon=2.0))
    assert labelled(location, "[Bot]") == location  # nothing to write a label on
    assert labelled(text, "") is text


def test_a_profile_field_an_event_leaves_out_keeps_its_known_value() -> None:
    known = {"name": "Ann", "phone": "+15550102030"}
    assert merged_profile(known, {"name": "Ann B"}) == {"name": "Ann B", "phone": "+15550102030"}
    assert merged_profile(known, {"email": "ann@example.com"}) == {**known, "email": "ann@example.com"}
    assert merged_profile({}, {"unknownKey": "x"}) == {}
