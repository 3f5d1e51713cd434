"""Reading what tests published from a real broker."""

from __future__ import annotations

import time

from events.kafka.consumer import ConsumedEvent, EventConsumer


def drain(
    consumer: EventConsumer, expected: int, timeout_s: float = 60.0, linger_s: float | None = None
) -> list[ConsumedEvent]:
    """Consume until ``expected`` events arrived (or time out), committing after every batch."""
    received: list[ConsumedEvent] = []
    deadline = time.monotonic() + timeout_s
    while len(received) < expected and time.monotonic() < deadline:
        batch = consumer.consume(max_messages=1000, timeout_s=0.5, linger_s=linger_s)
        for consumed in batch:
            consumer.mark_processed(consumed)
        received.extend(batch)
        consumer.commit()
    return received
