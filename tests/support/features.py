"""Captured chunks of a signal and the feature stage run over them, for the tests of its front ends."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from actors.capture import encode_pcm16
from actors.features import FeatureStage
from events.catalogue import AudioChunkCaptured, FeaturesExtracted
from events.kafka.consumer import ConsumedEvent
from events.topics import TopicCatalogue

CATALOGUE = TopicCatalogue(prefix="unit.")


def chunk_events(
    signal: np.ndarray,
    sizes: list[int],
    run_id: str = "run-1",
    stream_id: str = "ward-7",
) -> list[AudioChunkCaptured]:
    chunks, offset = [], 0
    for sequence, size in enumerate(sizes):
        chunks.append(
            AudioChunkCaptured(
                stream_id=stream_id,
                correlation_id=run_id,
                causation_id=run_id,
                sequence=sequence,
                sample_offset=offset,
                sample_rate=16000,
                captured_at=datetime.now(UTC),
                pcm16=encode_pcm16(signal[offset : offset + size]),
                clipped_samples=0,
                nonfinite_samples=0,
                is_last=sequence == len(sizes) - 1,
            )
        )
        offset += size
    assert offset == signal.shape[0]
    return chunks


def handle(stage: FeatureStage, chunks: list[AudioChunkCaptured]) -> list[FeaturesExtracted]:
    outputs = []
    for offset, chunk in enumerate(chunks):
        consumed = ConsumedEvent(
            event=chunk, topic=CATALOGUE.audio_chunks.name, partition=0, offset=offset, timestamp_ms=0
        )
        for event in stage.handle(consumed):
            assert isinstance(event, FeaturesExtracted)
            outputs.append(event)
    return outputs
