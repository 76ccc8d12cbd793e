"""Durable pull consumers: one per partition, one message in flight per partition.

The handler's outcome decides the message's fate, through `libs.errors.disposition` only: success
acks, retryable failures nak with a delay (the partition waits, so order holds), permanent failures
and exhausted retries are copied to the dead-letter stream and then termed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from libs.bus.envelope import Delivery
from libs.bus.publisher import KEY_HEADER, MSG_ID_HEADER
from libs.bus.topology import Stream, durable_name, partition_subject
from libs.errors import Action, BridgeError, backoff_delay, disposition
from libs.observability import CONSUMER_PENDING, DEAD_LETTERS, HOP_SECONDS, service_name, tracer
from libs.observability.tracing import extract_context

PENDING_REFRESH_S = 10.0
HOPS = {"router": "router", "kommo_sender": "kommo_send", "messenger_sender": "messenger_send"}
"""The metric `hop` each consumer's handling time is counted under."""

log = logging.getLogger(__name__)

Handler = Callable[[Delivery], Awaitable[None]]

# Retryable failures (a platform or Kommo outage) keep their message for hours: with the backoff
# capped at a minute, 1000 deliveries last about 16 hours before the message is dead-lettered.
DEFAULT_MAX_DELIVER = 1000
# Failures the error tree does not know (bugs) are given far fewer chances.
UNEXPECTED_FAILURE_LIMIT = 20
# Short, so a message held by a crashed replica is redelivered within seconds; a handler that runs
# longer keeps its message with progress heartbeats.
DEFAULT_ACK_WAIT_S = 6.0


def consumer_config(consumer: str, stream: Stream, partition: int, max_deliver: int, ack_wait: float) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=durable_name(consumer, stream, partition),
        filter_subject=partition_subject(stream, partition),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        max_ack_pending=1,
        max_deliver=max_deliver,
        ack_wait=ack_wait,
    )


class Consumer:
    """Runs `handler` over every partition of `stream` until stopped."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        consumer: str,
        stream: Stream,
        partitions: int,
        handler: Handler,
        max_deliver: int = DEFAULT_MAX_DELIVER,
        ack_wait: float = DEFAULT_ACK_WAIT_S,
    ) -> None:
        self._js = js
        self._consumer = consumer
        self._stream = stream
        self._partitions = partitions
        self._handler = handler
        self._max_deliver = max_deliver
        self._ack_wait = ack_wait
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscriptions: list[JetStreamContext.PullSubscription] = []
        self.handled = 0
        self.heartbeats = 0

    async def start(self) -> None:
        for partition in range(self._partitions):
            config = consumer_config(self._consumer, self._stream, partition, self._max_deliver, self._ack_wait)
            await self._js.add_consumer(self._stream.stream_name, config)
            sub = await self._js.pull_subscribe_bind(durable=config.durable_name or "", stream=self._stream.stream_name)
            self._subscriptions.append(sub)
            self._tasks.append(asyncio.create_task(self._run(sub, partition), name=config.durable_name))
        self._tasks.append(asyncio.create_task(self._watch_pending(), name=f"{self._consumer}-pending"))

    async def _watch_pending(self) -> None:
        """Publish how far behind this consumer is (the sum over its partitions) for the dashboards."""
        gauge = CONSUMER_PENDING.labels(service_name(), self._stream.stream_name)
        while not self._stopping.is_set():
            with contextlib.suppress(Exception):  # a broker hiccup: try again next round
                pending = 0
                for partition in range(self._partitions):
                    durable = durable_name(self._consumer, self._stream, partition)
                    pending += (await self._js.consumer_info(self._stream.stream_name, durable)).num_pending or 0
                gauge.set(pending)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), PENDING_REFRESH_S)

    async def stop(self) -> None:
        """Finish the message in hand, then stop pulling."""
        self._stopping.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # The durable consumers stay on the server; only this process's interest ends. Without this
        # the connection's drain waits for pull subscriptions that will never finish.
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _run(self, sub: JetStreamContext.PullSubscription, partition: int) -> None:
        while not self._stopping.is_set():
            try:
                messages = await sub.fetch(1, timeout=1.0)
            except NatsTimeoutError:
                continue
            except Exception as exc:  # connection loss: keep trying, the client reconnects by itself
                if self._stopping.is_set():
                    return
                log.warning(
                    "fetch failed", extra={"consumer": self._consumer, "partition": partition, "error": repr(exc)}
                )
                await asyncio.sleep(0.5)
                continue
            for msg in messages:
                try:
                    await self._process(msg)
                except Exception as exc:  # a lane must survive anything; the message will be redelivered
                    log.error(
                        "could not settle message; it will be redelivered",
                        extra={"consumer": self._consumer, "partition": partition, "error": repr(exc)},
                    )

    async def _process(self, msg: Msg) -> None:
        delivery = Delivery(
            subject=msg.subject,
            data=msg.data,
            headers=dict(msg.headers or {}),
            attempt=msg.metadata.num_delivered,
            stream_sequence=msg.metadata.sequence.stream,
        )
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        hop = HOPS.get(self._consumer, self._consumer)
        started = asyncio.get_running_loop().time()
        span = tracer().start_span(
            f"{self._consumer} {self._stream.stream_name}",
            context=extract_context(delivery.headers),
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "nats", "messaging.destination.name": delivery.subject},
        )
        try:
            with trace.use_span(span, end_on_exit=True):
                await self._handler(delivery)
        except Exception as exc:
            heartbeat.cancel()
            await self._settle_failure(msg, delivery, exc)
            return
        finally:
            heartbeat.cancel()
        await msg.ack()
        HOP_SECONDS.labels(service_name(), hop).observe(asyncio.get_running_loop().time() - started)
        self.handled += 1

    async def _heartbeat(self, msg: Msg) -> None:
        """Tell the server the message is still being worked on, so it is not redelivered meanwhile."""
        while True:
            await asyncio.sleep(self._ack_wait / 3)
            with contextlib.suppress(Exception):  # one missed beat is fine; the next one may pass
                await msg.in_progress()
                self.heartbeats += 1

    async def _settle_failure(self, msg: Msg, delivery: Delivery, exc: BaseException) -> None:
        decision = disposition(exc, delivery.attempt)
        context = {
            "consumer": self._consumer,
            "subject": delivery.subject,
            "stream_seq": delivery.stream_sequence,
            "attempt": delivery.attempt,
            "message_key": delivery.headers.get(KEY_HEADER, ""),
            "reason": decision.reason,
        }
        unexpected = not isinstance(exc, BridgeError)
        out_of_chances = delivery.attempt >= (UNEXPECTED_FAILURE_LIMIT if unexpected else self._max_deliver)
        if decision.action is Action.NAK and not out_of_chances:
            log.warning("handler failed, will retry", extra={**context, "delay_s": decision.delay})
            await msg.nak(delay=decision.delay)
            return
        reason = decision.reason if decision.action is Action.TERM else f"gave up after retries: {decision.reason}"
        log.error("message dead-lettered", extra=context, exc_info=exc)
        try:
            await self._dead_letter(delivery, reason)
        except Exception as dead_letter_error:
            # Never drop a message without its dead-letter record: try the whole thing again later.
            log.warning("dead-letter publish failed; will retry", extra={**context, "error": repr(dead_letter_error)})
            await msg.nak(delay=backoff_delay(delivery.attempt))
            return
        await msg.term()
        DEAD_LETTERS.labels(service_name(), self._stream.stream_name).inc()

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Keep the failed message, with why and where it failed, for `bridgectl` replay or drop."""
        headers = {
            **{k: v for k, v in delivery.headers.items() if k != MSG_ID_HEADER},
            "Bridge-Dead-Stream": self._stream.stream_name,
            "Bridge-Dead-Subject": delivery.subject,
            "Bridge-Dead-Consumer": self._consumer,
            "Bridge-Dead-Sequence": str(delivery.stream_sequence),
            "Bridge-Dead-Reason": reason[:1000],
            MSG_ID_HEADER: f"dead:{self._stream.stream_name}:{delivery.stream_sequence}:{self._consumer}",
        }
        subject = f"{Stream.DEAD_LETTERS.prefix}.{self._stream.prefix}"
        await self._js.publish(subject, delivery.data, headers=headers, stream=Stream.DEAD_LETTERS.stream_name)
