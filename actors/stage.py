"""The consume → handle → publish → commit loop shared by every pipeline stage.

A stage is plain logic (events in, events out) so it can be tested without Kafka and hosted by a Ray actor later;
the runner owns the Kafka side and follows the commit order documented on ``events.kafka.consumer.Checkpoint``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from events import Event
from events.kafka.bus import Bus
from events.kafka.consumer import ConsumedEvent, EventConsumer
from events.kafka.producer import EventProducer

log = logging.getLogger(__name__)


class Stage(Protocol):
    """Pipeline logic between topics. ``handle`` may keep per-stream state; it must not do Kafka I/O itself."""

    name: str

    def input_topics(self) -> Sequence[str]:
        """Topics this stage consumes."""
        ...

    def handle(self, consumed: ConsumedEvent) -> Iterable[Event]:
        """Events caused by one input event (often none)."""
        ...

    def tick(self) -> Iterable[Event]:
        """Events due because time passed (timeouts, quiet periods); called after every batch, even an empty one."""
        ...


# Given the partitions a runner was assigned: the input it finished shortly before its group's committed offsets.
RecentInput = Callable[[Sequence[tuple[str, int]]], Iterable[ConsumedEvent]]


class StageRunner:
    """Hosts one stage on Kafka: one consumer group per stage name, one producer, batch-wise commits.

    A stage restarted after a crash resumes from the committed offsets with empty memory (a debounce window, a
    speech segment, an extractor's context). Given ``recent_input``, the runner first feeds the stage what it
    finished just before those offsets, once its partitions are assigned, and drops what the stage publishes
    for it: that was published before the crash.
    """

    def __init__(
        self,
        stage: Stage,
        bus: Bus,
        *,
        group_id: str | None = None,
        max_batch: int = 256,
        poll_timeout_s: float = 0.2,
        linger_s: float = 0.02,
        recent_input: RecentInput | None = None,
    ) -> None:
        self.stage = stage
        self.max_batch = max_batch
        self.poll_timeout_s = poll_timeout_s
        self.linger_s = linger_s  # a partial batch goes out this soon after its first event, not after the timeout
        self.processed = 0
        self.published = 0
        self.replayed = 0
        self._recent_input = recent_input
        self.producer: EventProducer = bus.producer()
        self.consumer: EventConsumer = bus.consumer(
            group_id=group_id or f"{bus.catalogue.prefix}distress.{stage.name}",
            topics=list(stage.input_topics()),
            producer=self.producer,
        )

    def run_once(self) -> int:
        """Process one batch (possibly empty) and commit it; returns the number of input events handled."""
        batch = self.consumer.consume(
            max_messages=self.max_batch, timeout_s=self.poll_timeout_s, linger_s=self.linger_s
        )
        assigned = self.consumer.assignment()
        if self._recent_input is not None and assigned:
            self._rebuild_state(self._recent_input([(tp.topic, tp.partition) for tp in assigned]))
            self._recent_input = None
        for consumed in batch:
            self._publish(self.stage.handle(consumed))
            self.consumer.mark_processed(consumed)
        self._publish(self.stage.tick())
        self.consumer.commit()
        self.processed += len(batch)
        return len(batch)

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set, then commit and leave the group cleanly."""
        log.info("stage started", extra={"stage": self.stage.name})
        try:
            while not stop.is_set():
                self.run_once()
        finally:
            self.close()
            log.info("stage stopped", extra={"stage": self.stage.name, "processed": self.processed})

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.producer.flush()

    def _rebuild_state(self, finished: Iterable[ConsumedEvent]) -> None:
        for consumed in finished:
            for _ in self.stage.handle(consumed):  # published before the crash
                pass
            self.replayed += 1
        log.info("stage state rebuilt from recent input", extra={"stage": self.stage.name, "events": self.replayed})

    def _publish(self, events: Iterable[Event]) -> None:
        for event in events:
            self.producer.publish(event)
            self.published += 1
