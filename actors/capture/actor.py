"""The capture actor: one per stream, from an audio source to events on Kafka.

It publishes StreamStarted, then AudioChunkCaptured for every window (sequence, sample offset, capture time,
PCM16 payload, clipping and non-finite counts), then StreamEnded — or StreamFailed when the source cannot be
opened or breaks. Chunks and the closing event are caused by StreamStarted (its event id is their correlation
id), so consumers can tell two runs of the same stream id apart. Whatever was captured before a failure is
still published, ending with an ``is_last`` chunk, so downstream per-stream state is always released.

Every recording gets an answer: the classifier scores windows of about one second, so a stream that ends on its
own with less audio than that (but at least ``MIN_SCORED_SAMPLES``) is padded, after the sound so its times stay
true, up to ``SCORING_WINDOW_SAMPLES`` with a quiet microphone's noise floor: the window then holds the sound as
a live stream would carry it (never digital zero; the model was trained on sounds over background beds). Shorter
input fails the stream with a reason that names its length.

Input the source could only partly read (a file cut off or undecodable part-way) still ends the stream, with the
source's warnings in the StreamEnded reason and in the report.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import numpy as np

from actors.capture.blocks import AudioBlock, AudioSource, SourceError
from actors.capture.chunker import Chunk, Chunker, encode_pcm16
from actors.capture.normalise import TARGET_SAMPLE_RATE, NormalisedAudio, Normaliser
from actors.capture.pacing import ChunkClock, ClockMode
from events import Event
from events.catalogue import AudioChunkCaptured, StreamEnded, StreamFailed, StreamStarted

log = logging.getLogger(__name__)

# The audio one classifier window needs: a patch of 96 log-mel frames (10 ms hop, 25 ms window) spans 0.975 s, so a
# stream of one second always holds one (tests/actors/test_capture_short_and_partial.py checks it against the model).
SCORING_WINDOW_SAMPLES: Final = TARGET_SAMPLE_RATE
# Less than this is not a sound to judge but a click or an empty file: such a stream fails instead of being padded.
MIN_SCORED_SAMPLES: Final = TARGET_SAMPLE_RATE // 10
# The padding: white noise at -60 dBFS RMS, seeded so a recording always gets the same verdict. Against digital
# zeros (shipped model 1.5.0): 0.3 s screams cut from models.training.synth opened 8 of 30 incidents instead of 1;
# the game sounds of 0.1-0.975 s, screams 8 of 59 instead of 2, shouts 3 of 17 either way; none of their 753 speech
# and background clips did with either.
PADDING_NOISE_RMS: Final = 1e-3
PADDING_SEED: Final = 0


class EventPublisher(Protocol):
    """What the actor needs of ``events.kafka.producer.EventProducer``."""

    def publish(self, event: Event) -> None: ...

    def flush(self, timeout_s: float = 60.0) -> None: ...


@dataclass(frozen=True, kw_only=True)
class CaptureReport:
    """How one stream's capture went, for the CLI and for supervisors."""

    stream_id: str
    source: str
    source_kind: str
    outcome: Literal["ended", "failed"]
    reason: str
    chunks: int
    samples: int  # published, padding included
    padded_samples: int  # noise floor appended to a short stream so that it can be scored
    source_frames: int
    nonfinite_samples: int
    clipped_samples: int
    reconnects: int
    wall_seconds: float
    warnings: tuple[str, ...]  # the source's: what of the input was never heard
    declared_seconds: float | None  # how long the input says it is, when it says

    @property
    def audio_seconds(self) -> float:
        return self.samples / TARGET_SAMPLE_RATE

    @property
    def heard_seconds(self) -> float:
        """The source's own audio that was published (padding excluded)."""
        return (self.samples - self.padded_samples) / TARGET_SAMPLE_RATE

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"


class CaptureActor:
    """Runs one stream: source → normaliser → chunker → events, until the audio ends, fails, or ``stop`` is set."""

    def __init__(
        self,
        *,
        stream_id: str,
        source: AudioSource,
        publisher: EventPublisher,
        chunk_samples: int = TARGET_SAMPLE_RATE,
        realtime: bool = False,
        resample_quality: str = "HQ",
    ) -> None:
        if chunk_samples < 1:
            raise ValueError(f"chunk_samples must be at least 1, got {chunk_samples}")
        self.stream_id = stream_id
        self.source = source
        self.publisher = publisher
        self.chunk_samples = chunk_samples
        self.realtime = realtime
        self.resample_quality = resample_quality

    def run(self, stop: threading.Event | None = None) -> CaptureReport:
        """Capture the whole stream; source failures become a StreamFailed event and a failed report."""
        stop = stop or threading.Event()
        run = _StreamRun(self, stop)
        began = time.monotonic()
        outcome: Literal["ended", "failed"]
        try:
            with contextlib.closing(self.source.blocks(stop)) as blocks:
                outcome, reason = run.capture(blocks)
        except SourceError as error:
            outcome, reason = "failed", str(error)
            run.fail(reason)
        except Exception as error:  # a bug or a broken bus: still tell consumers the stream is over, then raise
            try:
                run.fail(f"internal error: {type(error).__name__}: {error}")
                self.publisher.flush()
            except Exception:
                log.exception("could not publish StreamFailed", extra={"stream_id": self.stream_id})
            raise
        self.publisher.flush()
        report = run.report(outcome, reason, time.monotonic() - began)
        log.info(
            "stream finished",
            extra={
                "stream_id": self.stream_id,
                "source": self.source.description,
                "outcome": outcome,
                "reason": reason,
                "chunks": report.chunks,
                "samples": report.samples,
                "padded_samples": report.padded_samples,
                "reconnects": report.reconnects,
            },
        )
        return report

    def clock_mode(self) -> ClockMode:
        """How chunk times are told: paced by sample time, by arrival (live sources) or by publish time."""
        if self.realtime:
            return ClockMode.PACED
        return ClockMode.ARRIVAL if self.source.live else ClockMode.PUBLISH


class _StreamRun:
    """The mutable state of one capture run (kept off the actor so a run cannot leak into the next)."""

    def __init__(self, actor: CaptureActor, stop: threading.Event) -> None:
        self.actor = actor
        self.stop = stop
        self.normaliser = Normaliser(quality=actor.resample_quality)
        self.chunker = Chunker(actor.chunk_samples)
        self.clock = ChunkClock(actor.clock_mode(), sample_rate=TARGET_SAMPLE_RATE, stop=stop)
        self.started: StreamStarted | None = None
        self.nonfinite = 0
        self.clipped = 0
        self.padded = 0
        self.tail_published = False

    def capture(self, blocks: Iterator[AudioBlock]) -> tuple[Literal["ended"], str]:
        first = next(blocks, None)
        if first is None:
            if self.stop.is_set():
                return "ended", "stopped before any audio arrived"
            raise SourceError(self.actor.source.description, "zero-length audio: the source produced no samples")
        self._start(first)
        for block in _prepend(first, blocks):
            block_start = self.chunker.received
            chunks = self.chunker.push(self.normaliser.push(block))
            self.clock.audio_arrived(block_start, self.chunker.received, discontinuity=block.discontinuity)
            if not self._publish(chunks):
                break
        return self._finish("stopped" if self.stop.is_set() else "eof")

    def fail(self, reason: str) -> None:
        """Publish what was captured (if the stream had started), then StreamFailed."""
        if self.started is not None:
            self._publish_tail(wait=False)
        self.actor.publisher.publish(
            StreamFailed(
                **self._envelope(),
                source=self.actor.source.description,
                reason=reason,
                chunks=self.chunker.emitted_chunks,
                samples=self.chunker.emitted_samples,
            )
        )
        log.warning("stream failed", extra={"stream_id": self.actor.stream_id, "reason": reason})

    def report(self, outcome: Literal["ended", "failed"], reason: str, wall_seconds: float) -> CaptureReport:
        return CaptureReport(
            stream_id=self.actor.stream_id,
            source=self.actor.source.description,
            source_kind=self.actor.source.kind,
            outcome=outcome,
            reason=reason,
            chunks=self.chunker.emitted_chunks,
            samples=self.chunker.emitted_samples,
            padded_samples=self.padded,
            source_frames=self.normaliser.source_frames,
            nonfinite_samples=self.nonfinite,
            clipped_samples=self.clipped,
            reconnects=self.actor.source.reconnects,
            wall_seconds=wall_seconds,
            warnings=tuple(self.actor.source.warnings),
            declared_seconds=self.actor.source.declared_seconds,
        )

    def _start(self, first: AudioBlock) -> None:
        self.started = StreamStarted(
            stream_id=self.actor.stream_id,
            source=self.actor.source.description,
            source_kind=self.actor.source.kind,
            sample_rate=TARGET_SAMPLE_RATE,
            chunk_samples=self.actor.chunk_samples,
            source_sample_rate=first.sample_rate,
            source_channels=first.channels,
            realtime=self.actor.realtime,
        )
        self.actor.publisher.publish(self.started)
        log.info(
            "stream started",
            extra={
                "stream_id": self.actor.stream_id,
                "source": self.actor.source.description,
                "source_rate": first.sample_rate,
                "source_channels": first.channels,
            },
        )

    def _finish(self, reason: str) -> tuple[Literal["ended"], str]:
        ended_by_source = reason == "eof"
        self._publish_tail(wait=reason != "stopped", pad=ended_by_source)
        heard = self.chunker.emitted_samples - self.padded
        if heard == 0:
            raise SourceError(
                self.actor.source.description, "zero-length audio: too few source frames for a single 16 kHz sample"
            )
        if ended_by_source and heard < MIN_SCORED_SAMPLES:
            raise SourceError(
                self.actor.source.description,
                f"too short to score: {heard / TARGET_SAMPLE_RATE:.3f} s of audio, at least "
                f"{MIN_SCORED_SAMPLES / TARGET_SAMPLE_RATE:.1f} s is needed",
            )
        if self.actor.source.warnings:
            reason = f"{reason}; input only partly read: {'; '.join(self.actor.source.warnings)}"
            log.warning(
                "stream input only partly read",
                extra={"stream_id": self.actor.stream_id, "warnings": self.actor.source.warnings},
            )
        self.actor.publisher.publish(
            StreamEnded(
                **self._envelope(),
                reason=reason,
                chunks=self.chunker.emitted_chunks,
                samples=self.chunker.emitted_samples,
            )
        )
        return "ended", reason

    def _publish_tail(self, *, wait: bool, pad: bool = False) -> None:
        """The resampler's delayed output, the padding of a short stream when ``pad``, and the final (``is_last``)
        chunk; only once, so a failure after the end was published publishes nothing more."""
        if self.tail_published:
            return
        self.tail_published = True
        tail = self.chunker.push(self.normaliser.finish())
        if pad:
            tail += self.chunker.push(self._padding())
        last = self.chunker.finish()
        self._publish([*tail, *([last] if last is not None else [])], wait=wait)

    def _padding(self) -> NormalisedAudio:
        """The noise floor that fills a stream of at least ``MIN_SCORED_SAMPLES`` up to ``SCORING_WINDOW_SAMPLES``."""
        heard = self.chunker.received
        if MIN_SCORED_SAMPLES <= heard < SCORING_WINDOW_SAMPLES:
            self.padded = SCORING_WINDOW_SAMPLES - heard
            log.info(
                "short stream padded with a noise floor to one scoring window",
                extra={"stream_id": self.actor.stream_id, "samples": heard, "padded_samples": self.padded},
            )
        floor = np.random.default_rng(PADDING_SEED).standard_normal(self.padded) * PADDING_NOISE_RMS
        return NormalisedAudio(heard, floor.astype(np.float32), np.zeros(0, dtype=np.int64))

    def _publish(self, chunks: Iterable[Chunk], *, wait: bool = True) -> bool:
        """Publish chunks in order, each when due; once stopped, the rest at once (no sample may be lost).

        Returns False when the capture was stopped.
        """
        assert self.started is not None
        running = True
        for chunk in chunks:
            if wait and running and not self.clock.wait_until_due(chunk):
                running = False
            self.nonfinite += chunk.nonfinite_samples
            self.clipped += chunk.clipped_samples
            self.actor.publisher.publish(
                AudioChunkCaptured(
                    **self.started.caused(),
                    sequence=chunk.sequence,
                    sample_offset=chunk.sample_offset,
                    sample_rate=TARGET_SAMPLE_RATE,
                    captured_at=self.clock.captured_at(chunk),
                    pcm16=encode_pcm16(chunk.samples),
                    clipped_samples=chunk.clipped_samples,
                    nonfinite_samples=chunk.nonfinite_samples,
                    is_last=chunk.is_last,
                )
            )
        return running and not self.stop.is_set()

    def _envelope(self) -> dict[str, Any]:
        if self.started is None:
            return {"stream_id": self.actor.stream_id}
        return self.started.caused()


def _prepend(first: AudioBlock, rest: Iterator[AudioBlock]) -> Iterator[AudioBlock]:
    yield first
    yield from rest
