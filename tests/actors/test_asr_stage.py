"""The ASR stage on real espeak-ng speech with the bundled Whisper model: phrases in stream time, silence ignored."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pytest

from actors.asr import AsrStage, build_recognizer
from actors.capture.chunker import encode_pcm16
from benchmarks.asr import synthesize
from config import load_settings
from events.catalogue import AudioChunkCaptured, TranscriptProduced
from events.kafka.consumer import ConsumedEvent
from events.topics import TopicCatalogue

RATE = 16_000


@pytest.fixture(scope="module")
def stage() -> AsrStage:
    return AsrStage(TopicCatalogue(), build_recognizer(load_settings()))


def chunks(stream_id: str, audio: npt.NDArray[np.float32]) -> list[AudioChunkCaptured]:
    pieces = [audio[start : start + RATE] for start in range(0, audio.size, RATE)]
    return [
        AudioChunkCaptured(
            stream_id=stream_id,
            sequence=index,
            sample_offset=index * RATE,
            sample_rate=RATE,
            captured_at=datetime.now(UTC),
            pcm16=encode_pcm16(piece),
            clipped_samples=0,
            nonfinite_samples=0,
            is_last=index == len(pieces) - 1,
        )
        for index, piece in enumerate(pieces)
    ]


def transcribe(stage: AsrStage, events: list[AudioChunkCaptured]) -> list[TranscriptProduced]:
    out = []
    for event in events:
        for produced in stage.handle(ConsumedEvent(event=event, topic="t", partition=0, offset=0, timestamp_ms=0)):
            assert isinstance(produced, TranscriptProduced)
            out.append(produced)
    return out


def test_shouted_call_for_help_is_transcribed_with_phrase_in_stream_time(stage: AsrStage) -> None:
    lead_in = np.zeros(3 * RATE, dtype=np.float32)
    speech = synthesize("Somebody help me!", voice="en-us", rate=150, pitch=60)
    audio = np.concatenate([lead_in, speech, np.zeros(RATE, dtype=np.float32)])
    events = chunks("hall", audio)
    transcripts = transcribe(stage, events)
    assert transcripts, "no transcript for clear speech"
    hits = [hit for transcript in transcripts for hit in transcript.phrases]
    assert any("help" in hit.phrase for hit in hits)
    assert all(hit.start_s >= 2.5 for hit in hits)  # stream time: after the 3 s lead-in
    first = transcripts[0]
    assert first.start_sample >= 2 * RATE and first.model_id and first.word_timestamps == "whisper"
    assert first.causation_id in {event.event_id for event in events}


def test_silence_and_redelivered_chunks_produce_nothing(stage: AsrStage) -> None:
    silence = chunks("quiet", np.zeros(4 * RATE, dtype=np.float32))
    assert transcribe(stage, silence) == []
    speech = chunks(
        "repeat",
        np.concatenate(
            [synthesize("Call the police!", voice="en", rate=160, pitch=50), np.zeros(RATE, dtype=np.float32)]
        ),
    )
    first = transcribe(stage, speech[:-1])
    again = transcribe(stage, speech[:-1])  # redelivered: skipped, not fed twice
    assert again == []
    assert first or transcribe(stage, speech[-1:])
