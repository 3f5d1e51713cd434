"""The Kafka transport: the only package that talks to ``confluent_kafka``.

- ``connection``: where the cluster is, client configuration, librdkafka's log lines, ``BusError``;
- ``producer``: ``EventProducer``, publishing events (and dead letters) with acknowledged delivery;
- ``consumer``: ``EventConsumer``, batched group consumption with explicit checkpoints and dead-lettering;
- ``log``: ``TopicLog``, reading topics outside any consumer group from offsets, from a time, to their end;
- ``admin``: topic creation and deletion, offsets, consumer-group lag and members (``KafkaProbe``);
- ``bus``: ``Bus``, one cluster's connection with the topic catalogue and codec;
- ``broker``: ``LocalBroker``, the lifecycle of the embedded single-node broker.

Actors never see raw Kafka messages: they receive decoded ``ConsumedEvent``s and publish ``Event`` objects.
"""
