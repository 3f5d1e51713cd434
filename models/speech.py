"""Speech recognition for live streams: VAD segmentation → Whisper → hallucination guard → phrase spotting.

One object serves every stream (the model is loaded once) and keeps only the per-stream segmenter state, so the
Kafka ASR stage and the offline ``distress detect`` run exactly the same chain. Times in the results are seconds
from the start of the stream, so a phrase hit can be lined up with the acoustic scores of the same moment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from events.catalogue import PhraseHit
from models.asr import Transcriber, Transcript
from models.hallucination import HallucinationGuard
from models.phrases import PhraseSpotter, StreamLexicons
from models.speech_segmenter import AudioSpan, SegmenterOptions, SpeechSegment, SpeechSegmenter
from models.vad import FloatArray, SileroVad


@dataclass(frozen=True)
class RecognisedSpeech:
    """A guarded transcript of one speech segment, with its words and phrase hits in stream time."""

    span: AudioSpan
    transcript: Transcript
    phrases: tuple[PhraseHit, ...]
    is_partial: bool


class SpeechRecognizer:
    """Shared model and guard; one segmenter and spotter per stream, created on first use."""

    def __init__(
        self,
        transcriber: Transcriber,
        lexicons: StreamLexicons,
        *,
        guard: HallucinationGuard | None = None,
        segmenter_options: SegmenterOptions | None = None,
        vad_factory: Callable[[], SileroVad] = SileroVad,
    ) -> None:
        self.transcriber = transcriber
        self.lexicons = lexicons
        self.guard = guard or HallucinationGuard(vad=vad_factory())
        self.segmenter_options = segmenter_options or SegmenterOptions()
        self._vad_factory = vad_factory
        self._segmenters: dict[str, SpeechSegmenter] = {}
        self._spotters: dict[str, PhraseSpotter] = {}
        self.rejected = 0

    def feed(self, stream_id: str, samples: FloatArray, sequence: int, sample_offset: int) -> list[RecognisedSpeech]:
        """Add one chunk of a stream; returns what the segments it completed said (often nothing)."""
        segments = self._segmenter(stream_id).feed(samples, sequence, sample_offset)
        return self._recognise_all(segments)

    def finish(self, stream_id: str) -> list[RecognisedSpeech]:
        """End of a stream: transcribe the speech still buffered and forget the stream."""
        segmenter = self._segmenters.pop(stream_id, None)
        self._spotters.pop(stream_id, None)
        return self._recognise_all(segmenter.finish()) if segmenter else []

    def _recognise_all(self, segments: list[SpeechSegment]) -> list[RecognisedSpeech]:
        results = [self._recognise(segment) for segment in segments]
        return [result for result in results if result is not None]

    def _recognise(self, segment: SpeechSegment) -> RecognisedSpeech | None:
        transcript = self.guard.review(segment.audio, self.transcriber.transcribe(segment.audio))
        if not transcript.words:
            self.rejected += 1
            return None
        offset = segment.span.start_s
        words = tuple(
            dataclasses.replace(word, start_s=word.start_s + offset, end_s=word.end_s + offset)
            for word in transcript.words
        )
        transcript = dataclasses.replace(transcript, words=words)
        return RecognisedSpeech(
            span=segment.span,
            transcript=transcript,
            phrases=self._spotter(segment.span.stream_id).spot(words),
            is_partial=segment.ended_by == "max_length",
        )

    def _segmenter(self, stream_id: str) -> SpeechSegmenter:
        segmenter = self._segmenters.get(stream_id)
        if segmenter is None:
            segmenter = SpeechSegmenter(stream_id, self.segmenter_options, vad=self._vad_factory())
            self._segmenters[stream_id] = segmenter
        return segmenter

    def _spotter(self, stream_id: str) -> PhraseSpotter:
        spotter = self._spotters.get(stream_id)
        if spotter is None:
            spotter = self._spotters[stream_id] = PhraseSpotter(self.lexicons.for_stream(stream_id))
        return spotter
