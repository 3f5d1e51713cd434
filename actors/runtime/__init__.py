"""The pipeline as supervised Ray actors, wired only through Kafka topics and consumer groups.

One job per module:

- ``hosts`` - the bodies of the Ray actors: ``StageHost`` (one replica of a registered stage), ``SourceHost`` (one
  capture stream), ``MetricsHost`` (latency, lag, Prometheus); each rebuilds itself from Kafka when Ray restarts it.
- ``resume`` - what a restarted actor reads back from the topics: a stage's recent input (``recent_input``), how
  far a stream's run got (``locate_stream_run``) and the publisher that continues it (``ResumingPublisher``).
- ``driver`` - ``PipelineRuntime``, which starts, watches and stops the actors, and ``connect_ray``.
- ``status`` - what `distress status` shows, read from Kafka alone: it imports no Ray, so the command stays quick.

Backpressure: stages process synchronously, one bounded batch (``StageSpec.max_batch``) at a time, and each
``StageRunner`` consumer's prefetch queue is bounded (``runtime.consumer_prefetch_kbytes``). A slow stage (ASR)
therefore holds at most one batch plus that queue in memory; everything it has not reached waits in Kafka, on disk,
and shows up as lag in `distress status`. Producers block (serving delivery reports) when librdkafka's local queue
is full. (``Worker`` stages - alerting, projections - read in bounded batches of their own.)

Shutdown (Ctrl-C / SIGTERM on the driver): sources stop first (each publishes StreamEnded "stopped"), stages get a
short drain period for what is already on the topics, then every stage finishes its batch, flushes its producer,
commits its offsets and leaves its group; then the actors are killed and a local cluster shut down.

This package's ``__init__`` imports nothing, so that importing ``actors.runtime.status`` does not load Ray.
"""
