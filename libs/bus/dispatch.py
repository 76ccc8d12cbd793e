"""One consumer lane, several kinds of message: each delivery goes to the handler of its type.

Commands of one conversation must keep their order even when they are of different kinds (a message,
then a profile update), so they share a stream and a partition, and the `Bridge-Type` header the
publisher sets says which handler takes each one.
"""

from __future__ import annotations

from google.protobuf.message import Message as ProtoMessage

from libs.bus.consumer import Handler
from libs.bus.envelope import Delivery
from libs.bus.publisher import TYPE_HEADER
from libs.errors import PermanentError


class Dispatcher:
    """A consumer handler that routes by message type; an unknown type can never succeed."""

    def __init__(self, routes: dict[type[ProtoMessage], Handler], *, untyped: type[ProtoMessage] | None = None) -> None:
        self._routes = {message_type.DESCRIPTOR.full_name: handler for message_type, handler in routes.items()}
        # Messages published before the type header existed (or re-published raw) are of this type.
        self._untyped = untyped.DESCRIPTOR.full_name if untyped is not None else ""

    def add(self, message_type: type[ProtoMessage], handler: Handler) -> None:
        """One more route, for a handler that can only be made once the service's clients exist."""
        self._routes[message_type.DESCRIPTOR.full_name] = handler

    async def __call__(self, delivery: Delivery) -> None:
        name = delivery.headers.get(TYPE_HEADER) or self._untyped
        handler = self._routes.get(name)
        if handler is None:
            raise PermanentError(f"no handler for message type {name or '(none)'!r}")
        await handler(delivery)
