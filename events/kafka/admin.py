"""The cluster's administration: topics (create, delete), offsets, consumer groups' lag and members, reachability."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from confluent_kafka import Consumer, ConsumerGroupState, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]

from events.kafka.connection import BusError, KafkaConnection, Partition
from events.topics import TopicSpec


class MetricsError(Exception):
    """Kafka could not answer a metrics query (offsets, lag, metadata)."""


# ------------------------------------------------------------------------------------------------- topics


def ensure_topics(
    connection: KafkaConnection,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Safe to call on every start."""
    admin = AdminClient(connection.client_config())
    specs = list(specs)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [
        NewTopic(spec.name, num_partitions=spec.partitions, replication_factor=replication_factor, config=spec.config())
        for spec in specs
        if spec.name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout_s, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # lost a race with another starter
                raise BusError(f"could not create topic {name}: {error.args[0].str()}") from error
    return created


def delete_topics(connection: KafkaConnection, names: Sequence[str], *, timeout_s: float = 30.0) -> list[str]:
    """Delete the topics; returns a line per topic that could not be deleted (left to the caller to report)."""
    admin = AdminClient(connection.client_config())
    failures = []
    for name, future in admin.delete_topics(list(names), operation_timeout=timeout_s).items():
        try:
            future.result()
        except Exception as error:  # any failure is reported, none stops the others
            failures.append(f"{name}: {error}")
    return failures


def commit_offsets(connection: KafkaConnection, group_id: str, offsets: Mapping[Partition, int]) -> None:
    """Set a consumer group's committed offsets (the next offset to read per partition) without joining the group,
    as a member that finished everything before them would have left them: for preparing a group's position, as the
    tests of stage restarts and of a finished pipeline do."""
    committer = Consumer(connection.client_config(**{"group.id": group_id, "enable.auto.commit": False}))
    try:
        committer.commit(
            offsets=[TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()],
            asynchronous=False,
        )
    except KafkaException as error:
        raise BusError(f"could not commit the offsets of group {group_id}: {error.args[0].str()}") from error
    finally:
        committer.close()


def reachable(connection: KafkaConnection, timeout_s: float, **overrides: Any) -> bool:
    """True when the cluster answers a metadata request within ``timeout_s`` (not just an open port)."""
    admin = AdminClient(connection.client_config(**overrides))
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception:  # any client-side failure means "not usable now"
        return False
    return True


# --------------------------------------------------------------------------------------------- kafka probes


class KafkaProbe:
    """Read-only questions about topics and consumer groups, answered by the Kafka admin API.

    Answers a cluster gives while it settles (a new topic's leader being elected, a restarted broker loading its
    group coordinator) are retried for up to ``timeout_s``; anything else becomes a ``MetricsError``.
    """

    def __init__(self, connection: KafkaConnection, *, timeout_s: float = 10.0) -> None:
        self._connection = connection
        self._admin = AdminClient(connection.client_config())
        self._timeout_s = timeout_s

    def ping(self) -> None:
        """Raise ``MetricsError`` unless the cluster answers a metadata request within the timeout."""
        self._ask("reach the cluster", lambda: self._admin.list_topics(timeout=self._timeout_s))

    def topics(self) -> set[str]:
        """The names of every topic the cluster lists now (a topic deleted a moment ago may still be listed)."""
        metadata = self._ask("read topic metadata", lambda: self._admin.list_topics(timeout=self._timeout_s))
        return set(metadata.topics)

    def partitions(self, topics: Iterable[str]) -> list[Partition]:
        metadata = self._ask("read topic metadata", lambda: self._admin.list_topics(timeout=self._timeout_s))
        found: list[Partition] = []
        for topic in topics:
            described = metadata.topics.get(topic)
            if described is None or described.error is not None:
                raise MetricsError(f"topic {topic} does not exist (has the pipeline been started once?)")
            found.extend((topic, partition) for partition in sorted(described.partitions))
        return found

    def partition_count(self, topic: str) -> int:
        return len(self.partitions([topic]))

    def end_offsets(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        return self._offsets(partitions, OffsetSpec.latest())  # type: ignore[no-untyped-call]

    def start_offsets(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        return self._offsets(partitions, OffsetSpec.earliest())  # type: ignore[no-untyped-call]

    def offsets_at(self, partitions: Sequence[Partition], timestamp_ms: int) -> dict[Partition, int]:
        """First offset at or after the time per partition; the end offset where nothing is that recent."""
        at_time = self._offsets(partitions, OffsetSpec.for_timestamp(timestamp_ms))
        ends = self.end_offsets(partitions)
        return {key: ends[key] if offset < 0 else offset for key, offset in at_time.items()}

    def committed(self, group_id: str, partitions: Sequence[Partition]) -> dict[Partition, int | None]:
        """The group's committed offsets, asked through a consumer that never joins the group.

        (The admin API's ListConsumerGroupOffsets crashed the process in confluent-kafka 2.16 while a fresh
        broker was still loading its group coordinator; OffsetFetch from a consumer does not.)
        """
        reader = Consumer(self._connection.client_config(**{"group.id": group_id, "enable.auto.commit": False}))
        try:
            answer = self._ask(
                f"read the committed offsets of group {group_id}",
                lambda: reader.committed(
                    [TopicPartition(topic, partition) for topic, partition in partitions], timeout=self._timeout_s
                ),
            )
        finally:
            reader.close()
        return {(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None for tp in answer}

    def group_lag(
        self, group_id: str, topics: Sequence[str], ends: Mapping[Partition, int] | None = None
    ) -> dict[Partition, int]:
        """Messages a group has not committed yet per partition (a group that never committed owes everything).

        Pass ``ends`` to measure against end offsets read earlier, so several groups are judged at one instant.
        """
        partitions = self.partitions(topics)
        starts = self.start_offsets(partitions)
        ends = ends if ends is not None else self.end_offsets(partitions)
        committed = self.committed(group_id, partitions)
        lag = {}
        for key in partitions:
            position = committed.get(key)
            lag[key] = ends[key] - max(starts[key] if position is None else position, starts[key])
        return lag

    def group_members(self, group_id: str) -> int:
        description = self._ask(
            f"describe group {group_id}",
            lambda: self._admin.describe_consumer_groups([group_id])[group_id].result(timeout=self._timeout_s),
        )
        return len(description.members)

    def stable_members(self, group_ids: Sequence[str]) -> dict[str, int]:
        """Members of each group that is stable now (not rebalancing); a group still joining is left out."""

        def ask() -> dict[str, int]:
            described = self._admin.describe_consumer_groups(list(group_ids))
            groups = {group_id: future.result(timeout=self._timeout_s) for group_id, future in described.items()}
            return {
                group_id: len(group.members)
                for group_id, group in groups.items()
                if group.state == ConsumerGroupState.STABLE
            }

        return self._ask("describe consumer groups", ask)

    def _offsets(self, partitions: Sequence[Partition], spec: OffsetSpec) -> dict[Partition, int]:
        if not partitions:
            return {}

        def ask() -> dict[Partition, int]:
            wanted = {TopicPartition(topic, partition): spec for topic, partition in partitions}
            futures = self._admin.list_offsets(wanted, request_timeout=self._timeout_s)
            return {
                (tp.topic, tp.partition): future.result(timeout=self._timeout_s).offset
                for tp, future in futures.items()
            }

        return self._ask("list offsets", ask)

    def _ask(self, what: str, call: Callable[[], Answer]) -> Answer:
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                return call()
            except KafkaException as error:
                if error.args[0].code() not in _SETTLING or time.monotonic() > deadline:
                    raise MetricsError(f"cannot {what}: {error.args[0].str()}") from error
            except TimeoutError as error:
                raise MetricsError(f"cannot {what}: no answer within {self._timeout_s:.0f} s") from error
            time.sleep(0.2)


Answer = TypeVar("Answer")

# Errors a cluster reports while it settles: a partition leader being elected, metadata propagating, a group
# coordinator loading after a restart, the broker briefly unreachable.
_SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
}
