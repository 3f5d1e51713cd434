"""The feature stage: one FeaturesExtracted event per captured chunk, from a streaming extractor per stream.

Frames are numbered on the stream's global grid (frame ``i`` covers samples ``[i*hop, i*hop + win)``), so a
chunk's frames are those *completed* by it: the extractor carries the tail of one chunk into the next, and the
features of a stream equal those of the whole signal computed at once.

Kafka delivers at least once and a stage may restart mid-stream, so each stream's extractor remembers the run
(the chunk's correlation id: its StreamStarted) and the next sample offset it expects:
* a chunk of a new run, or a first chunk seen mid-stream, starts a fresh extractor aligned to the frame grid;
* a chunk before the expected offset was already processed (redelivery) and is skipped;
* a chunk after it means audio was lost: logged, and the extractor restarts aligned at the new offset.
The extractor of a stream is dropped after its ``is_last`` chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from actors.capture.chunker import decode_pcm16
from events import Event
from events.catalogue import AudioChunkCaptured, FeaturesExtracted
from events.kafka.consumer import ConsumedEvent
from events.topics import TopicCatalogue
from models.acoustic import CNN_FRONT_END, FrontEnd
from models.features import StreamingFeatureExtractor, summarize

log = logging.getLogger(__name__)


@dataclass
class _StreamState:
    """One stream run's extractor and where it stands on the stream's sample and frame grids."""

    run_id: str | None
    extractors: tuple[StreamingFeatureExtractor, ...]  # one per log-mel of the front end, on one frame grid
    next_offset: int  # stream sample the next chunk must start at
    frame_base: int  # global index of the extractor's frame 0
    skip_samples: int  # samples still to drop so that the extractor starts on a frame boundary


class FeatureStage:
    """Consumes ``audio.chunks``, emits ``FeaturesExtracted`` (float16 log-mel frames + summary) per chunk."""

    name = "features"

    def __init__(self, catalogue: TopicCatalogue, front_end: FrontEnd = CNN_FRONT_END) -> None:
        self.catalogue = catalogue
        self.front_end = front_end
        self.config = front_end.features
        self.skipped_duplicates = 0
        self.gaps = 0
        self._streams: dict[str, _StreamState] = {}

    def input_topics(self) -> Sequence[str]:
        return [self.catalogue.audio_chunks.name]

    def handle(self, consumed: ConsumedEvent) -> Iterable[Event]:
        chunk = consumed.event
        if not isinstance(chunk, AudioChunkCaptured):
            log.warning(
                "unexpected event on the audio topic",
                extra={"event_type": type(chunk).event_type, "topic": consumed.topic},
            )
            return []
        if chunk.sample_rate != self.config.sample_rate:
            log.error(
                "chunk sample rate differs from the feature sample rate; chunk skipped",
                extra={
                    "stream_id": chunk.stream_id,
                    "sequence": chunk.sequence,
                    "sample_rate": chunk.sample_rate,
                    "expected": self.config.sample_rate,
                },
            )
            return []
        state = self._state_for(chunk)
        if state is None:
            return []
        samples = decode_pcm16(chunk.pcm16)
        state.next_offset = chunk.sample_offset + samples.shape[0]
        if state.skip_samples:
            dropped = min(state.skip_samples, samples.shape[0])
            samples = samples[dropped:]
            state.skip_samples -= dropped
        first, *others = state.extractors  # the summary (loudness, pitch) comes from the first log-mel's frames
        frames = [first.push(samples), *(extractor.push_log_mel(samples) for extractor in others)]
        log_mel = np.concatenate([part.log_mel for part in frames], axis=1)
        if chunk.is_last:
            del self._streams[chunk.stream_id]
        return [
            FeaturesExtracted(
                **chunk.caused(),
                sequence=chunk.sequence,
                sample_offset=chunk.sample_offset,
                first_frame=state.frame_base + frames[0].first_frame,
                frames=frames[0].n_frames,
                n_mels=self.front_end.n_mels,
                log_mel=self.front_end.name,
                log_mel_f16=log_mel.astype("<f2").tobytes(),
                summary=summarize(frames[0], self.config),
                is_last=chunk.is_last,
            )
        ]

    def tick(self) -> Iterable[Event]:
        return ()

    def _state_for(self, chunk: AudioChunkCaptured) -> _StreamState | None:
        """The stream's extractor for this chunk, or None when the chunk was already processed."""
        state = self._streams.get(chunk.stream_id)
        if state is not None and state.run_id == chunk.correlation_id:
            if chunk.sample_offset == state.next_offset:
                return state
            if chunk.sample_offset < state.next_offset:
                self.skipped_duplicates += 1
                log.info(
                    "chunk already processed; skipped", extra={"stream_id": chunk.stream_id, "sequence": chunk.sequence}
                )
                return None
            self.gaps += 1
            log.warning(
                "audio missing before chunk; features restart at its offset",
                extra={
                    "stream_id": chunk.stream_id,
                    "sequence": chunk.sequence,
                    "missing_samples": chunk.sample_offset - state.next_offset,
                },
            )
        state = self._aligned_state(chunk)
        self._streams[chunk.stream_id] = state
        return state

    def _aligned_state(self, chunk: AudioChunkCaptured) -> _StreamState:
        hop = self.config.hop_length
        skip = -chunk.sample_offset % hop
        return _StreamState(
            run_id=chunk.correlation_id,
            extractors=tuple(StreamingFeatureExtractor(part) for part in self.front_end.parts),
            next_offset=chunk.sample_offset,
            frame_base=(chunk.sample_offset + skip) // hop,
            skip_samples=skip,
        )


def decode_log_mel(event: FeaturesExtracted) -> np.ndarray[tuple[int, int], np.dtype[np.float32]]:
    """The (frames, n_mels) float32 log-mel patch of a FeaturesExtracted event."""
    expected = event.frames * event.n_mels * 2
    if len(event.log_mel_f16) != expected:
        raise ValueError(
            f"log_mel_f16 holds {len(event.log_mel_f16)} bytes, expected {expected} "
            f"for {event.frames} frames x {event.n_mels} mels"
        )
    patch = np.frombuffer(event.log_mel_f16, dtype="<f2").astype(np.float32)
    return patch.reshape(event.frames, event.n_mels)
