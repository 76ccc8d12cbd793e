"""Streams, subjects and partitions: the shape of all traffic between services.

Every stream is split into `partitions` subjects (`<prefix>.p<N>`). A message's partition comes from
its ordering key (a conversation), and each partition is consumed by one durable consumer with
`max_ack_pending=1`, so messages of one conversation are handled strictly one after another however
many replicas pull, while different partitions proceed in parallel.
"""

from __future__ import annotations

import enum
import zlib


class Stream(enum.Enum):
    """One JetStream stream per kind of traffic (ARCHITECTURE §4)."""

    INBOUND = ("BRIDGE_INBOUND", "inbound")
    OUTBOUND = ("BRIDGE_OUTBOUND", "outbound")
    KOMMO_COMMANDS = ("BRIDGE_KOMMO_COMMANDS", "kommo")
    # Kommo CRM upkeep paced by its REST limit (sources, contact profiles), in lanes of its own so
    # that waiting for a REST slot never holds up a message.
    CRM_COMMANDS = ("BRIDGE_CRM_COMMANDS", "crm")
    MESSENGER_COMMANDS = ("BRIDGE_MESSENGER_COMMANDS", "messenger")
    REPORTS = ("BRIDGE_REPORTS", "reports")
    DEAD_LETTERS = ("BRIDGE_DEAD_LETTERS", "dead")

    def __init__(self, stream_name: str, prefix: str) -> None:
        self.stream_name = stream_name
        self.prefix = prefix

    @property
    def wildcard(self) -> str:
        return f"{self.prefix}.>"


def partition_of(key: str, partitions: int) -> int:
    """Stable partition of an ordering key (CRC-32, identical in every process and language)."""
    return zlib.crc32(key.encode()) % partitions


def partition_subject(stream: Stream, partition: int) -> str:
    return f"{stream.prefix}.p{partition}"


def subject_for(stream: Stream, key: str, partitions: int) -> str:
    return partition_subject(stream, partition_of(key, partitions))


def durable_name(consumer: str, stream: Stream, partition: int) -> str:
    return f"{consumer}-{stream.prefix}-p{partition}"
