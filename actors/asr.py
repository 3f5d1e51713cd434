"""The ASR stage: speech in ``audio.chunks`` becomes ``TranscriptProduced`` events with distress-phrase hits.

Only audio the VAD calls speech reaches Whisper, long speech is flushed every ``max_segment_s`` so a shouted
"help" is reported within seconds, and the hallucination guard drops text the audio does not support — a
transcript is only published when some words survive it. Redelivered or out-of-order chunks (at-least-once
delivery, restarts) are skipped rather than fed twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from actors.capture.chunker import decode_pcm16
from config import Settings
from events import Event
from events.catalogue import AudioChunkCaptured, TranscriptProduced
from events.kafka.consumer import ConsumedEvent
from events.topics import TopicCatalogue
from models.asr import AsrOptions, Transcriber, resolve_model
from models.phrases import Lexicon, LexiconOverride, StreamLexicons
from models.speech import RecognisedSpeech, SpeechRecognizer
from models.speech_segmenter import SegmenterOptions

log = logging.getLogger(__name__)


class AsrStage:
    """Consumes ``audio.chunks``; emits guarded transcripts with phrase hits (stream-time seconds)."""

    name = "asr"

    def __init__(self, catalogue: TopicCatalogue, recognizer: SpeechRecognizer) -> None:
        self.catalogue = catalogue
        self.recognizer = recognizer
        self._next_offsets: dict[str, int] = {}

    def input_topics(self) -> Sequence[str]:
        return [self.catalogue.audio_chunks.name]

    def handle(self, consumed: ConsumedEvent) -> Iterable[Event]:
        chunk = consumed.event
        if not isinstance(chunk, AudioChunkCaptured):
            return ()
        expected = self._next_offsets.get(chunk.stream_id)
        if expected is not None and chunk.sample_offset < expected:
            return ()  # already transcribed (redelivery after a restart or rebalance)
        samples = decode_pcm16(chunk.pcm16)
        results = self.recognizer.feed(chunk.stream_id, samples, chunk.sequence, chunk.sample_offset)
        self._next_offsets[chunk.stream_id] = chunk.sample_offset + samples.shape[0]
        if chunk.is_last:
            results += self.recognizer.finish(chunk.stream_id)
            self._next_offsets.pop(chunk.stream_id, None)
        return [transcript_event(chunk, result) for result in results]

    def tick(self) -> Iterable[Event]:
        return ()


def transcript_event(cause: AudioChunkCaptured, speech: RecognisedSpeech) -> TranscriptProduced:
    transcript = speech.transcript
    return TranscriptProduced(
        **cause.caused(),
        text=transcript.text,
        words=transcript.words,
        language=transcript.language,
        model_id=transcript.model_id,
        model_version=transcript.model_version,
        word_timestamps=transcript.word_timestamps,
        first_sequence=speech.span.first_sequence,
        last_sequence=speech.span.last_sequence,
        start_sample=speech.span.start_sample,
        end_sample=speech.span.end_sample,
        avg_logprob=transcript.avg_logprob,
        no_speech_prob=transcript.no_speech_prob,
        is_partial=speech.is_partial,
        guard_flags=transcript.guard.reasons,
        phrases=speech.phrases,
    )


def build_recognizer(settings: Settings) -> SpeechRecognizer:
    """The configured model, lexicon and segmenter; fails fast if the model is not available offline."""
    config = settings.asr
    transcriber = Transcriber(
        resolve_model(config.model),
        AsrOptions(
            device=config.device,
            cpu_threads=config.cpu_threads,
            beam_size=config.beam_size,
            alignment_model_dir=config.alignment_model_dir,
        ),
    )
    base = Lexicon.default().with_overrides(add=config.phrases_add, remove=config.phrases_remove)
    streams = set(config.stream_phrases_add) | set(config.stream_phrases_remove)
    overrides = {
        stream: LexiconOverride(
            add=config.stream_phrases_add.get(stream, ()), remove=config.stream_phrases_remove.get(stream, ())
        )
        for stream in streams
    }
    return SpeechRecognizer(
        transcriber,
        StreamLexicons(base, overrides),
        segmenter_options=SegmenterOptions(max_segment_s=config.max_segment_s),
    )


def build_asr_stage(settings: Settings) -> AsrStage:
    return AsrStage(settings.topics(), build_recognizer(settings))
