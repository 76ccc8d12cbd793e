"""Publishing to JetStream: partitioned subject, `Nats-Msg-Id` for dedup, wait for the PubAck."""

from __future__ import annotations

from google.protobuf.message import Message as ProtoMessage
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck

from libs.bus.topology import Stream, subject_for
from libs.errors import RetryableError
from libs.observability.tracing import inject_context

MSG_ID_HEADER = "Nats-Msg-Id"
KEY_HEADER = "Bridge-Key"
TYPE_HEADER = "Bridge-Type"
"""The protobuf type of the payload, so one stream can carry several kinds of event or command."""


class Publisher:
    """Publishes protobuf messages; any failure to get a PubAck is a RetryableError."""

    def __init__(self, js: JetStreamContext, partitions: int, *, timeout: float = 5.0) -> None:
        self._js = js
        self._partitions = partitions
        self._timeout = timeout

    async def publish(
        self,
        stream: Stream,
        key: str,
        message: ProtoMessage | bytes,
        msg_id: str,
        *,
        headers: dict[str, str] | None = None,
        ack_timeout: float | None = None,
    ) -> PubAck:
        """Publish `message` into the partition of ordering `key`. Returns once it is durably stored."""
        all_headers = {MSG_ID_HEADER: msg_id, KEY_HEADER: key}
        if isinstance(message, bytes):
            data = message
        else:
            data = message.SerializeToString()
            all_headers[TYPE_HEADER] = message.DESCRIPTOR.full_name
        all_headers.update(headers or {})
        inject_context(all_headers)  # the message's trace continues in whoever consumes it
        try:
            return await self._js.publish(
                subject_for(stream, key, self._partitions),
                data,
                timeout=ack_timeout or self._timeout,
                stream=stream.stream_name,
                headers=all_headers,
            )
        except (TimeoutError, NatsError) as exc:  # every nats-py and JetStream failure
            raise RetryableError(f"publish to {stream.stream_name} failed: {type(exc).__name__}") from exc
