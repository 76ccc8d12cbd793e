"""The bus adapter over nats-py JetStream: the only code that knows how services talk to each other."""

from libs.bus.connection import connect, ensure_streams
from libs.bus.consumer import Consumer, Handler
from libs.bus.dispatch import Dispatcher
from libs.bus.envelope import Delivery
from libs.bus.publisher import KEY_HEADER, TYPE_HEADER, Publisher
from libs.bus.topology import Stream, partition_of, subject_for

__all__ = [
    "KEY_HEADER",
    "TYPE_HEADER",
    "Consumer",
    "Delivery",
    "Dispatcher",
    "Handler",
    "Publisher",
    "Stream",
    "connect",
    "ensure_streams",
    "partition_of",
    "subject_for",
]
