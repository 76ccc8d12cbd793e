"""A template submission that reached Meta but whose answer was lost: the redelivery adopts the template
Meta has, instead of being refused as a name taken (which would end the Kommo review as rejected)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kommo_bridge.events.v1 import events_pb2

from libs.errors import PermanentError
from tests.unit.whatsapp_support import World, whatsapp_world

KOMMO_TEMPLATE = events_pb2.PlatformTemplate(
    name="Order shipped",
    language="en_US",
    category="UTILITY",
    content="Hi {{contact.name}}, your order has shipped.",
    examples={"{{contact.name}}": "Ann"},
)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with whatsapp_world() as world:
        yield world


async def test_a_resumed_submission_adopts_the_template_meta_already_has(world: World) -> None:
    first = await world.adapter.submit_template(
        world.http, world.graph_url, world.credential, KOMMO_TEMPLATE, "kommo_template_7"
    )
    again = await world.adapter.submit_template(
        world.http, world.graph_url, world.credential, KOMMO_TEMPLATE, "kommo_template_7", resumed=True
    )
    assert (again.platform_template_id, again.external_id) == (first.platform_template_id, first.external_id)
    assert again.review_status == first.review_status == "review"
    assert again.markers == first.markers


async def test_a_first_submission_of_a_taken_name_is_still_refused_with_metas_reason(world: World) -> None:
    await world.adapter.submit_template(world.http, world.graph_url, world.credential, KOMMO_TEMPLATE, "t7")
    with pytest.raises(PermanentError):
        await world.adapter.submit_template(world.http, world.graph_url, world.credential, KOMMO_TEMPLATE, "t7")


async def test_a_resumed_submission_meta_never_got_is_submitted(world: World) -> None:
    submitted = await world.adapter.submit_template(
        world.http, world.graph_url, world.credential, KOMMO_TEMPLATE, "kommo_template_7", resumed=True
    )
    assert submitted.platform_template_id and submitted.review_status == "review"
