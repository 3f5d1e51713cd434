"""Evidence assembly without a broker: byte ranges, waveform peaks, phrase marking and the score chart."""

from __future__ import annotations

import io
import wave
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from events import Event
from events.catalogue import DistressScored, LabelScore, PhraseHit, TranscriptProduced
from frontend.evidence import ClipGeometry, RangeNotSatisfiable, assemble, byte_range, evidence_span, waveform
from frontend.schemas import Evidence, IncidentSummary, PhraseOut
from frontend.views import score_chart

RATE = 16_000
ONSET = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def summary(**fields: object) -> IncidentSummary:
    values: dict[str, object] = {
        "incident_id": "hall-1:0123456789ab",
        "stream_id": "hall-1",
        "stream_name": "Hall",
        "status": "open",
        "severity": "high",
        "score": 0.9,
        "reason": "scream",
        "onset_at": ONSET,
        "opened_at": ONSET,
        "updated_at": ONSET,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "closed_at": None,
        "closed_by": None,
        "close_reason": None,
        "labels": [],
        "phrases": [],
        "transcript": "",
        "has_clip": True,
        "clip_duration_s": 12.0,
    }
    return IncidentSummary.model_validate({**values, **fields})


def scored(window: int, score: float, *, at: datetime = ONSET) -> DistressScored:
    return DistressScored(
        stream_id="hall-1",
        occurred_at=at,
        sequence=window,
        sample_offset=window * RATE,
        score=score,
        acoustic_probability=score,
        threshold=0.6,
        is_distress=score >= 0.6,
        labels=(LabelScore(label="scream", score=score), LabelScore(label="glass", score=0.2)),
        phrases=(),
        rms_dbfs=-20.0,
        pitch_hz=0.0,
        reason="",
        model_id="m",
        model_version="1",
    )


def transcript(text: str, start_window: int, *, partial: bool = False) -> TranscriptProduced:
    return TranscriptProduced(
        stream_id="hall-1",
        text=text,
        words=(),
        language="en",
        model_id="w",
        model_version="1",
        word_timestamps="whisper",
        first_sequence=start_window,
        last_sequence=start_window,
        start_sample=start_window * RATE,
        end_sample=(start_window + 2) * RATE,
        avg_logprob=-0.1,
        no_speech_prob=0.0,
        is_partial=partial,
        guard_flags=(),
        phrases=(PhraseHit(phrase="help", matched_text="HELP", score=0.9, start_s=21.0, end_s=21.4),),
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("bytes=0-9", (0, 9)),
        ("bytes=90-", (90, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-500", (0, 99)),
        ("bytes=50-5000", (50, 99)),
        ("bytes=9-3", None),
        ("items=0-9", None),
        ("bytes=0-1,4-5", None),
        ("bytes=-", None),
    ],
)
def test_byte_ranges(header: str | None, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=150-160", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        byte_range(header, 100)


def wav(samples: np.ndarray, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(RATE)
        writer.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def test_waveform_peaks_are_min_and_max_per_slice() -> None:
    samples = np.zeros(RATE, dtype=np.int16)
    samples[RATE // 2 : RATE // 2 + 10] = [16384, -16384] * 5  # one click in the middle
    peaks = waveform(wav(samples), 10)
    assert peaks.duration_s == 1.0 and len(peaks.peaks) == 10
    assert peaks.peaks[5] == (-0.5, 0.5)
    assert all(peak == (0.0, 0.0) for index, peak in enumerate(peaks.peaks) if index != 5)
    assert len(waveform(wav(samples[:4]), 10).peaks) == 4  # never more slices than samples
    with pytest.raises(ValueError, match="mono"):
        waveform(wav(np.zeros(20, dtype=np.int16), channels=2), 10)


def test_assembly_aligns_scores_to_onset_and_marks_phrases_without_word_times() -> None:
    geometry = ClipGeometry.of(onset_sample=20 * RATE, clip_pre_s=5.0)
    assert (geometry.onset_s, geometry.clip_start_s) == (20.0, 15.0)
    events: list[Event] = [scored(window, 0.1 * (window - 12)) for window in (14, 15, 20, 22)]
    events += [
        scored(20, 0.95, at=ONSET + timedelta(seconds=1)),
        transcript("please HELP me now", 20),
        transcript("hel", 20, partial=True),
        transcript("long before", 2),
    ]
    incident = summary(phrases=[PhraseOut(phrase="help", matched_text="help", score=0.9, start_s=21, end_s=21.4)])
    evidence = assemble(incident, geometry, events, clip_url="/clip", problem=None)
    assert [point.t_s for point in evidence.scores] == [-5.0, 0.0, 2.0]  # before the clip: dropped
    assert evidence.scores[1].score == 0.95  # the re-delivered window's later copy
    assert evidence.top_labels == ["scream", "glass"]
    assert evidence.onset_in_clip_s == 5.0
    [line] = evidence.transcripts
    assert (line.start_s, line.end_s, line.timed) == (5.0, 7.0, False)
    assert [(token.text, token.phrase) for token in line.tokens] == [
        ("please ", False),
        ("HELP", True),
        (" me now", False),
    ]


def test_without_the_topics_the_incident_transcript_still_shows_its_phrases() -> None:
    incident = summary(
        transcript="Help! Somebody help me",
        phrases=[PhraseOut(phrase="help me", matched_text="help me", score=0.9, start_s=1, end_s=2)],
    )
    evidence = assemble(incident, ClipGeometry.of(0, 5.0), None, clip_url=None, problem="broker down")
    assert evidence.scores == [] and evidence.problem == "broker down" and evidence.clip_url is None
    assert [(token.text, token.phrase) for token in evidence.transcripts[0].tokens] == [
        ("Help! Somebody ", False),
        ("help me", True),
    ]


def test_the_evidence_span_covers_pre_roll_and_stops_at_closing() -> None:
    closed = summary(closed_at=ONSET + timedelta(minutes=2))
    assert evidence_span(closed, ONSET + timedelta(hours=5), 5.0) == (
        ONSET - timedelta(seconds=35),
        ONSET + timedelta(minutes=2, seconds=30),
    )
    endless = summary()
    assert evidence_span(endless, ONSET + timedelta(hours=5), 5.0)[1] == ONSET + timedelta(minutes=10, seconds=30)


def test_the_score_chart_draws_score_and_labels_with_an_onset_marker() -> None:
    evidence = assemble(
        summary(),
        ClipGeometry.of(20 * RATE, 5.0),
        [scored(window, 0.1 * (window - 12)) for window in range(15, 26)],
        clip_url=None,
        problem=None,
    )
    chart = score_chart(evidence)
    assert chart is not None
    assert [series.name for series in chart.series] == ["scream", "glass", "distress score"]
    assert len(chart.series[-1].points.split()) == 11
    assert chart.onset_x == pytest.approx(28 + 5 / 10 * (640 - 56))
    assert [text for _, text in chart.x_ticks] == ["-4 s", "-2 s", "+0 s", "+2 s", "+4 s"]
    assert score_chart(Evidence.model_validate({**evidence.model_dump(), "scores": evidence.scores[:1]})) is None
