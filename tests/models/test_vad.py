"""Silero VAD streaming and the speech segmenter, on espeak speech and generated non-speech."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from benchmarks.asr import LEAD_SILENCE_S, SpokenClip, synthesize
from models.speech_segmenter import SegmenterOptions, SpeechSegment, SpeechSegmenter
from models.vad import SAMPLE_RATE, WINDOW_S, WINDOW_SAMPLES, FloatArray, SileroVad

CHUNK = 4000  # 0.25 s, deliberately not a multiple of the 512-sample VAD window


def feed_all(
    segmenter: SpeechSegmenter, audio: FloatArray, first_sequence: int = 0, first_offset: int = 0
) -> list[tuple[int, SpeechSegment]]:
    """Stream `audio` in CHUNK pieces; return (sequence of the chunk that released it, segment)."""
    released: list[tuple[int, SpeechSegment]] = []
    for index, start in enumerate(range(0, audio.size, CHUNK)):
        sequence = first_sequence + index
        for segment in segmenter.feed(audio[start : start + CHUNK], sequence, first_offset + start):
            released.append((sequence, segment))
    released.extend((-1, segment) for segment in segmenter.finish())
    return released


def speech_bounds(clip: SpokenClip) -> tuple[int, int]:
    """First and last sample of the synthesised speech (the clip is clean and surrounded by silence)."""
    loud = np.flatnonzero(np.abs(clip.audio) > 0.01)
    return int(loud[0]), int(loud[-1])


def test_streaming_probabilities_match_an_offline_pass(distress_clips: list[SpokenClip]) -> None:
    audio = distress_clips[0].audio
    usable = audio[: audio.size - audio.size % WINDOW_SAMPLES]
    vad = SileroVad()
    cuts = [0, 3 * WINDOW_SAMPLES, 4 * WINDOW_SAMPLES, 20 * WINDOW_SAMPLES, usable.size]
    streamed = np.concatenate([vad.process(usable[start:end]) for start, end in itertools.pairwise(cuts)])
    offline = SileroVad().probabilities(usable)
    assert streamed.shape == offline.shape == (usable.size // WINDOW_SAMPLES,)
    np.testing.assert_allclose(streamed, offline, atol=1e-5)


def test_offline_pass_leaves_the_stream_state_alone(distress_clips: list[SpokenClip]) -> None:
    audio = distress_clips[1].audio[: 40 * WINDOW_SAMPLES]
    reference = SileroVad()
    interrupted = SileroVad()
    expected = np.concatenate(
        [reference.process(audio[: 20 * WINDOW_SAMPLES]), reference.process(audio[20 * WINDOW_SAMPLES :])]
    )
    first = interrupted.process(audio[: 20 * WINDOW_SAMPLES])
    interrupted.probabilities(distress_clips[2].audio)
    second = interrupted.process(audio[20 * WINDOW_SAMPLES :])
    np.testing.assert_allclose(np.concatenate([first, second]), expected, atol=1e-6)


def test_speech_scores_high_and_silence_low(distress_clips: list[SpokenClip]) -> None:
    clip = distress_clips[0]
    probabilities = SileroVad().probabilities(clip.audio)
    first, last = (sample // WINDOW_SAMPLES for sample in speech_bounds(clip))
    assert probabilities[first:last].max() > 0.9
    assert probabilities[: first - 2].max() < 0.2
    assert probabilities[last + 10 :].max() < 0.2


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.zeros(512, dtype=np.float64), "float32"),
        (np.zeros((2, 512), dtype=np.float32), "1-D"),
        (np.full(512, np.nan, dtype=np.float32), "NaN"),
        (np.zeros(500, dtype=np.float32), "multiple of 512"),
    ],
)
def test_vad_rejects_bad_input(samples: FloatArray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SileroVad().process(samples)


def test_nonspeech_yields_no_segments(nonspeech: dict[str, FloatArray]) -> None:
    for name, signal in nonspeech.items():
        assert feed_all(SpeechSegmenter("s"), signal) == [], name


def test_one_utterance_becomes_one_segment_with_its_span(distress_clips: list[SpokenClip]) -> None:
    clip = distress_clips[0]
    first_offset = 480_000
    released = feed_all(SpeechSegmenter("kitchen"), clip.audio, first_sequence=100, first_offset=first_offset)
    assert len(released) == 1
    released_at, segment = released[0]
    span = segment.span
    first, last = speech_bounds(clip)
    assert segment.ended_by == "silence"
    assert span.stream_id == "kitchen"
    assert first_offset + first - 0.35 * SAMPLE_RATE <= span.start_sample <= first_offset + first
    assert first_offset + last <= span.end_sample <= first_offset + last + 0.35 * SAMPLE_RATE
    assert span.first_sequence == 100 + (span.start_sample - first_offset) // CHUNK
    assert span.last_sequence == 100 + (span.end_sample - 1 - first_offset) // CHUNK
    np.testing.assert_array_equal(
        segment.audio, clip.audio[span.start_sample - first_offset : span.end_sample - first_offset]
    )
    # Released once the pause is long enough, not at the end of the stream.
    assert released_at != -1
    assert (released_at - 100 + 1) * CHUNK - last <= (SegmenterOptions().min_silence_s + 0.3) * SAMPLE_RATE


def test_long_speech_is_flushed_in_pieces_while_it_lasts() -> None:
    sentences = [
        "The quick brown fox jumps over the lazy dog and runs into the forest",
        "while the farmer keeps shouting from the old wooden porch behind the barn",
        "and nobody in the whole village seems to notice anything at all tonight",
    ]
    speech = np.concatenate([synthesize(text, "en-us", 190, 50) for text in sentences])
    silence = np.zeros(round(LEAD_SILENCE_S * SAMPLE_RATE), dtype=np.float32)
    audio = np.concatenate([silence, speech, silence])
    options = SegmenterOptions(max_segment_s=4.0)
    released = feed_all(SpeechSegmenter("hall", options), audio)
    segments = [segment for _, segment in released]
    partials = [segment for segment in segments if segment.ended_by == "max_length"]
    assert len(partials) >= 2
    assert all(segment.span.duration_s <= options.max_segment_s + 1e-9 for segment in segments)
    for before, after in itertools.pairwise(segments):
        if before.ended_by == "max_length":
            assert after.span.start_sample == before.span.end_sample  # a partial flush loses no audio
    # The first piece is released as soon as the speech reaches max_segment_s, within one chunk.
    first_release_sequence, first_segment = released[0]
    assert first_segment.ended_by == "max_length"
    released_after = (first_release_sequence + 1) * CHUNK
    assert released_after <= first_segment.span.start_sample + options.max_segment_s * SAMPLE_RATE + CHUNK
    covered = sum(segment.audio.size for segment in segments)
    assert covered >= speech.size * 0.9


def test_gap_closes_the_segment_and_overlap_is_rejected(distress_clips: list[SpokenClip]) -> None:
    clip = distress_clips[0]
    first, _ = speech_bounds(clip)
    segmenter = SpeechSegmenter("door")
    cut = first + 8000  # half a second into the speech
    assert segmenter.feed(clip.audio[:cut], 0, 0) == []
    released = segmenter.feed(clip.audio[cut:], 1, cut + 16_000)
    assert released[0].ended_by == "gap"
    assert released[0].span.end_sample == cut
    # The speech after the gap is a new segment of its own, starting after the skipped samples.
    assert all(segment.span.start_sample >= cut + 16_000 for segment in released[1:])
    with pytest.raises(ValueError, match="overlapping"):
        segmenter.feed(np.zeros(100, dtype=np.float32), 2, cut)
    with pytest.raises(ValueError, match="must increase"):
        segmenter.feed(np.zeros(100, dtype=np.float32), 1, 10**7)


def test_without_the_gate_everything_is_cut_into_max_length_pieces() -> None:
    silence = np.zeros(10 * SAMPLE_RATE, dtype=np.float32)
    options = SegmenterOptions(gate=False, max_segment_s=4.0)
    segments = [segment for _, segment in feed_all(SpeechSegmenter("raw", options), silence)]
    assert [segment.ended_by for segment in segments] == ["max_length", "max_length", "end_of_stream"]
    assert segments[0].span.duration_s == pytest.approx(4.0, abs=WINDOW_S)
    assert sum(segment.audio.size for segment in segments) == silence.size


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"onset_threshold": 0.3, "offset_threshold": 0.5}, "offset_threshold"),
        ({"min_silence_s": 0.1, "pad_s": 0.2}, "min_silence_s"),
        ({"max_segment_s": 1.0}, "max_segment_s"),
        ({"max_segment_s": 40.0}, "max_segment_s"),
    ],
)
def test_segmenter_options_are_validated(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmenterOptions(**options)


def test_segmenter_rejects_bad_chunks() -> None:
    segmenter = SpeechSegmenter("s")
    with pytest.raises(ValueError, match="float32"):
        segmenter.feed(np.zeros(100, dtype=np.int16), 0, 0)
    with pytest.raises(ValueError, match="sample_offset"):
        segmenter.feed(np.zeros(100, dtype=np.float32), 0, -1)
    with pytest.raises(ValueError, match="stream_id"):
        SpeechSegmenter("")
