"""What a consumer handler receives: the payload plus the delivery facts it may need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.message import Message as ProtoMessage

from libs.errors import BadRequestError

P = TypeVar("P", bound=ProtoMessage)


@dataclass(frozen=True)
class Delivery:
    subject: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)
    attempt: int = 1
    stream_sequence: int = 0

    def decode(self, message_type: type[P]) -> P:
        """Parse the payload; a payload that is not the expected protobuf can never succeed."""
        message = message_type()
        try:
            message.ParseFromString(self.data)
        except Exception as exc:
            raise BadRequestError(f"payload is not a valid {message_type.__name__}") from exc
        return message
