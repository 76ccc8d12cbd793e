"""A reaction taken back without naming it (WhatsApp's removal carries an empty emoji) is still an
`unreact` amojo takes (§8: the emoji is required to react only)."""

from __future__ import annotations

import pytest

from libs.errors import BadRequestError
from libs.kommo.payloads import EmbeddedMessage, Reaction


def test_an_unreact_without_an_emoji_names_none() -> None:
    removal = Reaction("conv-1", EmbeddedMessage(id="k-9"), "client-1", "", removed=True)
    assert removal.to_json() == {
        "conversation_id": "conv-1",
        "id": "k-9",
        "user": {"id": "client-1"},
        "type": "unreact",
    }
    named = Reaction("conv-1", EmbeddedMessage(msgid="m-1"), "client-1", "👍", removed=True)
    assert named.to_json()["emoji"] == "👍"


def test_a_react_still_needs_its_emoji() -> None:
    with pytest.raises(BadRequestError, match="needs an emoji"):
        Reaction("conv-1", EmbeddedMessage(id="k-9"), "client-1", "")
