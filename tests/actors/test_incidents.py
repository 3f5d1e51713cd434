"""The incident rules on scripted windows, clips and privacy mode, and state rebuilt from the incidents topic."""

from __future__ import annotations

import hashlib
import io
import uuid
import wave
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from actors.clips import ClipStore
from actors.incidents.engine import IncidentEngine
from actors.incidents.stage import build_incident_stage
from actors.stage import StageRunner
from config import Settings
from config.settings import IncidentConfig
from domain.incidents import IncidentRecord, fold_incidents, incident_id_for, stream_of_incident
from events import Event
from events.catalogue import (
    DistressScored,
    IncidentEscalated,
    IncidentEvent,
    IncidentMarkedFalseAlarm,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    LabelScore,
)
from tests.support.kafka import drain
from tests.support.scenario import HELP, RATE, FakeClock, Scenario

E = TypeVar("E", bound=Event)


def engine(
    config: IncidentConfig | None = None,
    *,
    clips: ClipStore | None = None,
    store_audio: bool = True,
    clock: FakeClock | None = None,
) -> IncidentEngine:
    return IncidentEngine(
        config or IncidentConfig(), clip_store=clips, stores_audio=lambda _: store_audio, clock=clock or FakeClock()
    )


def feed(target: IncidentEngine, scores: Iterable[DistressScored]) -> list[Event]:
    return [event for scored in scores for event in target.on_score(scored)]


def of_type(events: Iterable[Event], kind: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, kind)]


def test_one_positive_window_is_not_an_incident_but_two_of_three_are() -> None:
    story = Scenario()
    incidents = engine()
    assert feed(incidents, [story.score(0), story.score(1, 0.8), story.score(2), story.score(3)]) == []
    assert feed(incidents, [story.score(6, 0.75), story.score(7), story.score(8, 0.7)]) != []
    opened = of_type(incidents.on_score(story.score(9)), IncidentOpened)  # nothing new: already open
    assert opened == []


def test_the_onset_is_the_first_window_of_the_debounced_run() -> None:
    story = Scenario()
    events = feed(engine(), [story.score(4, 0.7), story.score(5), story.score(6, 0.8)])
    [opened] = of_type(events, IncidentOpened)
    assert opened.onset_sample == 4 * RATE
    assert opened.incident_id == incident_id_for(story.stream_id, events[0].causation_id or "")
    assert stream_of_incident(opened.incident_id) == story.stream_id
    assert opened.reason.startswith("2 of the last 3 windows positive")
    assert opened.severity == "medium" and opened.score == pytest.approx(0.8)
    assert opened.correlation_id == story.correlation_id and opened.clip_sha256 is None


def test_one_very_strong_window_opens_at_once() -> None:
    story = Scenario()
    [opened] = of_type(feed(engine(), [story.score(3, 0.95)]), IncidentOpened)
    assert opened.onset_sample == 3 * RATE and "one strong window" in opened.reason and opened.severity == "high"


def test_a_long_event_with_pauses_is_one_incident_resolved_after_the_quiet_period() -> None:
    story = Scenario()
    windows = [story.score(i, 0.8 if (i % 10) < 4 else 0.1) for i in range(0, 60)]  # 4 s bursts every 10 s
    windows += [story.score(i) for i in range(60, 130)]
    events = feed(engine(), windows)
    assert len(of_type(events, IncidentOpened)) == 1
    [resolved] = of_type(events, IncidentResolved)
    assert resolved.actor == "system" and resolved.reason == "quiet for 60 s"
    resolved_window = next(window for window in windows if window.event_id == resolved.causation_id)
    assert resolved_window.sample_offset == (53 + 60) * RATE  # last evidence at 53 s, quiet for 60 s
    assert len(of_type(events, IncidentUpdated)) <= 2  # unchanged evidence is not re-published every window


def test_a_stray_positive_far_from_the_evidence_does_not_keep_an_incident_alive() -> None:
    story = Scenario()
    config = IncidentConfig(merge_gap_s=5, quiet_period_s=30)
    windows = [story.score(0, 0.8), story.score(1, 0.8)] + [story.score(i) for i in range(2, 20)]
    windows += [story.score(20, 0.8)] + [story.score(i) for i in range(21, 40)]  # lone blip 19 s later
    events = feed(engine(config), windows)
    [resolved] = of_type(events, IncidentResolved)
    assert next(w for w in windows if w.event_id == resolved.causation_id).sample_offset == 31 * RATE


def test_cooldown_suppresses_a_new_incident_right_after_one_closed() -> None:
    story = Scenario()
    config = IncidentConfig(quiet_period_s=10, merge_gap_s=5, cooldown_s=20)

    def burst(start: int) -> list[DistressScored]:
        return [story.score(start, 0.8), story.score(start + 1, 0.8)]

    windows = burst(0) + [story.score(i) for i in range(2, 12)]  # resolved at 11 s, cooldown until 31 s
    windows += burst(20) + [story.score(i) for i in range(22, 40)] + burst(40)
    incidents = engine(config)
    events = feed(incidents, windows)
    opened = of_type(events, IncidentOpened)
    assert [event.onset_sample for event in opened] == [0, 40 * RATE]
    assert incidents.streams[story.stream_id].suppressed == 1


def test_evidence_escalates_severity_up_to_critical_with_the_reason() -> None:
    story = Scenario()
    incidents = engine()
    events = feed(incidents, [story.score(0, 0.75), story.score(1, 0.78)])
    [opened] = of_type(events, IncidentOpened)
    assert opened.severity == "medium"
    events = feed(incidents, [story.score(2, 0.88)])
    assert [(e.from_severity, e.to_severity) for e in of_type(events, IncidentEscalated)] == [("medium", "high")]
    transcript = story.transcript(1, 3, "please help me", phrases=(HELP,))
    events = incidents.on_transcript(transcript)
    [updated] = of_type(events, IncidentUpdated)
    [escalated] = of_type(events, IncidentEscalated)
    assert updated.transcript == "please help me" and updated.phrases == (HELP,)
    assert (escalated.from_severity, escalated.to_severity) == ("high", "critical")
    assert escalated.reason == "'help me' said + scream 0.88"
    assert events.index(updated) < events.index(escalated)
    assert of_type(feed(incidents, [story.score(4, 0.6, label="crying")]), IncidentEscalated) == []  # never down


def test_a_gunshot_is_critical_and_an_alarm_high_on_their_own() -> None:
    story = Scenario()
    [shot] = of_type(
        feed(engine(), [story.score(0, 0.72, label="gunshot"), story.score(1, 0.7, label="gunshot")]), IncidentOpened
    )
    assert shot.severity == "critical" and "critical: gunshot 0.72" in shot.reason
    [alarm] = of_type(
        feed(engine(), [story.score(0, 0.7, label="alarm"), story.score(1, 0.71, label="alarm")]), IncidentOpened
    )
    assert alarm.severity == "high" and "high: alarm 0.71" in alarm.reason
    quiet = IncidentConfig(label_severities={})
    [plain] = of_type(
        feed(engine(quiet), [story.score(0, 0.7, label="alarm"), story.score(1, 0.71, label="alarm")]), IncidentOpened
    )
    assert plain.severity == "medium"


def test_a_label_that_does_not_exist_is_refused_in_the_settings() -> None:
    with pytest.raises(ValueError, match=r"unknown sound label.*'gunshots'"):
        IncidentConfig(label_severities={"gunshots": "critical"})
    with pytest.raises(ValueError, match=r"unknown sound label.*'shriek'"):
        IncidentConfig(vocal_labels=("scream", "shriek"))


def test_a_transcript_heard_just_before_the_onset_is_part_of_the_opening() -> None:
    story = Scenario()
    incidents = engine()
    incidents.on_transcript(story.transcript(0, 1, "stop it, help me", phrases=(HELP,)))
    incidents.on_transcript(story.transcript(0, 0, "stop", partial=True))
    [opened] = of_type(feed(incidents, [story.score(3, 0.95)]), IncidentOpened)
    assert opened.transcript == "stop it, help me" and opened.severity == "critical"


def test_the_clip_follows_the_opening_once_the_post_roll_arrived(tmp_path: Path) -> None:
    story = Scenario()
    config = IncidentConfig(clip_pre_s=2, clip_post_s=3)
    store = ClipStore(tmp_path / "clips")
    incidents = engine(config, clips=store)
    chunks = [story.chunk(i) for i in range(0, 12)]
    for window in range(0, 6):
        incidents.on_audio(chunks[window])
        events = incidents.on_score(story.score(window, 0.8 if window in (4, 5) else 0.1))
    [opened] = of_type(events, IncidentOpened)
    assert opened.clip_sha256 is None and opened.onset_at == story.at(4)
    for window in range(6, 8):
        assert incidents.on_audio(chunks[window]) == []
    [updated] = of_type(incidents.on_audio(chunks[8]), IncidentUpdated)  # window 8 ends 3 s after window 5
    assert updated.clip_duration_s == pytest.approx(2 + 2 + 3)
    assert updated.clip_sha256 is not None
    wav = store.read(updated.clip_sha256)
    assert store.path_for(updated.clip_sha256) == (
        tmp_path / "clips" / updated.clip_sha256[:2] / updated.clip_sha256[2:4] / f"{updated.clip_sha256}.wav"
    )
    with wave.open(io.BytesIO(wav)) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (RATE, 1, 2)
        assert reader.readframes(reader.getnframes()) == story.pcm(chunks, 2 * RATE, 9 * RATE)
    assert hashlib.sha256(wav).hexdigest() == updated.clip_sha256


def test_the_onset_time_is_counted_from_earlier_audio_when_the_score_overtook_its_chunk() -> None:
    story = Scenario()
    incidents = engine()
    for window in range(0, 2):
        incidents.on_audio(story.chunk(window))
    [opened] = of_type(feed(incidents, [story.score(2, 0.8), story.score(3, 0.8)]), IncidentOpened)
    assert opened.onset_at == story.at(2)
    [alone] = of_type(feed(engine(), [Scenario(stream_id="new").score(4, 0.95)]), IncidentOpened)
    assert alone.onset_at == Scenario().score(4).occurred_at  # no audio seen at all: the time it was scored


def test_privacy_mode_keeps_detections_and_words_but_no_audio(tmp_path: Path) -> None:
    story = Scenario()
    store = ClipStore(tmp_path / "clips")
    incidents = engine(IncidentConfig(clip_pre_s=1, clip_post_s=1), clips=store, store_audio=False)
    events: list[Event] = []
    for window in range(0, 10):
        events += incidents.on_audio(story.chunk(window))
        events += incidents.on_score(
            story.score(window, 0.95 if window == 3 else 0.1, phrases=(HELP,) if window == 3 else ())
        )
    events += incidents.on_transcript(story.transcript(2, 4, "help me"))
    [opened] = of_type(events, IncidentOpened)
    assert opened.labels[0] == LabelScore(label="scream", score=0.95) and opened.phrases == (HELP,)
    assert opened.onset_at == story.at(3)  # capture times are kept even though the audio is not
    assert all(getattr(event, "clip_sha256", None) is None for event in events)
    assert of_type(events, IncidentUpdated)[-1].transcript == "help me"
    assert not (tmp_path / "clips").exists()


def test_a_clip_is_written_with_what_arrived_when_the_stream_ends_or_stalls(tmp_path: Path) -> None:
    story = Scenario()
    clock = FakeClock()
    incidents = engine(IncidentConfig(clip_pre_s=1, clip_post_s=5), clips=ClipStore(tmp_path), clock=clock)
    for window in range(0, 4):
        incidents.on_audio(story.chunk(window))
    incidents.on_score(story.score(2, 0.95))
    [updated] = of_type(incidents.on_audio(story.chunk(4, is_last=True)), IncidentUpdated)
    assert updated.clip_duration_s == pytest.approx(4.0)  # windows 1..4: pre-roll plus what there was

    other = Scenario(stream_id="yard-2")
    for window in range(0, 4):
        incidents.on_audio(other.chunk(window))
    incidents.on_score(other.score(3, 0.95))
    clock.now += 5.0
    assert incidents.tick() == []
    clock.now += 2.5
    [stalled] = of_type(incidents.tick(), IncidentUpdated)
    assert stalled.clip_duration_s == pytest.approx(2.0) and stalled.stream_id == "yard-2"


def test_an_operator_decision_stops_tracking_and_starts_the_cooldown() -> None:
    story = Scenario()
    incidents = engine(IncidentConfig(cooldown_s=10))
    [opened] = of_type(feed(incidents, [story.score(0, 0.95)]), IncidentOpened)
    dismissed = IncidentMarkedFalseAlarm(
        stream_id=story.stream_id, incident_id=opened.incident_id, actor="operator:ana", note="tv"
    )
    assert incidents.on_incident_event(dismissed) == []
    assert incidents.active_incident(story.stream_id) is None
    assert of_type(feed(incidents, [story.score(i, 0.95) for i in range(1, 10)]), IncidentOpened) == []
    [reopened] = of_type(feed(incidents, [story.score(11, 0.95)]), IncidentOpened)
    assert reopened.incident_id != opened.incident_id


def test_no_scores_for_the_quiet_period_resolves_on_the_wall_clock() -> None:
    story = Scenario()
    clock = FakeClock()
    incidents = engine(IncidentConfig(quiet_period_s=30), clock=clock)
    feed(incidents, [story.score(0, 0.95)])
    clock.now += 29.0
    assert incidents.tick() == []
    clock.now += 1.0
    [resolved] = incidents.tick()
    assert isinstance(resolved, IncidentResolved) and resolved.reason == "no analysed audio for 30 s"
    assert incidents.tick() == []


def test_redelivered_windows_change_nothing_and_a_capture_restart_starts_afresh() -> None:
    story = Scenario()
    incidents = engine(IncidentConfig(quiet_period_s=10, merge_gap_s=5))
    windows = [story.score(0, 0.8), story.score(1, 0.8), story.score(2)]
    first = feed(incidents, windows)
    assert feed(incidents, windows) == []  # the same windows again (a re-delivered batch)
    restarted = Scenario(session_start=story.at(3600), correlation_id="session-2")
    events = feed(incidents, [restarted.score(i) for i in range(0, 9)])
    assert of_type(events, IncidentResolved) == []  # the quiet period counts from the restart, not from t=0
    [resolved] = of_type(feed(incidents, [restarted.score(10)]), IncidentResolved)
    assert resolved.incident_id == of_type(first, IncidentOpened)[0].incident_id


def test_windows_scored_again_by_a_restarted_scorer_change_nothing() -> None:
    """Same run, same offsets, scored later: not a capture restart, so the debounce and the clock stand."""
    story = Scenario()
    incidents = engine()
    assert feed(incidents, [story.score(0), story.score(1, 0.8)]) == []
    rescored = [replace(story.score(i, 0.8), occurred_at=story.at(i + 60)) for i in (0, 1)]
    assert feed(incidents, rescored) == []
    assert of_type(feed(incidents, [story.score(2, 0.8)]), IncidentOpened)  # windows 1 and 2 of the last three


def test_a_phrase_score_behind_the_latest_window_keeps_the_debounce_and_the_cooldown() -> None:
    """A phrase score is anchored where its words began, so it arrives behind the stream's clock."""
    story = Scenario()
    incidents = engine(IncidentConfig(quiet_period_s=10, merge_gap_s=5, cooldown_s=30))

    def said(window: int, after: int) -> DistressScored:  # a hedged phrase: evidence, not a positive window
        return replace(story.score(window, 0.3, phrases=(HELP,)), occurred_at=story.at(after) + timedelta(seconds=0.5))

    windows = [*(story.score(i) for i in range(5)), story.score(5, 0.8), said(4, 5), story.score(6, 0.8)]
    events = feed(incidents, windows)
    [opened] = of_type(events, IncidentOpened)  # windows 5 and 6 of [5, the phrase, 6]
    assert opened.onset_sample == 5 * RATE
    events = feed(incidents, [story.score(i) for i in range(7, 17)])
    assert of_type(events, IncidentResolved)  # quiet from 6 s: resolved at 16 s, cooling down until 46 s
    events = feed(incidents, [story.score(20), said(18, 20), story.score(21, 0.8), story.score(22, 0.8)])
    assert of_type(events, IncidentOpened) == [] and incidents.streams[story.stream_id].suppressed == 1
    assert feed(incidents, [said(18, 30)]) == []  # delivered again


def test_an_incident_opened_by_a_later_phrase_score_starts_where_the_words_began() -> None:
    story = Scenario()
    said = replace(story.score(3, 0.8, phrases=(HELP,)), occurred_at=story.at(4) + timedelta(seconds=0.5))
    [opened] = of_type(feed(engine(), [story.score(2), story.score(4, 0.8), said]), IncidentOpened)
    assert opened.onset_sample == 3 * RATE


def test_the_same_input_gives_the_same_events_with_the_same_ids() -> None:
    story = Scenario()
    windows = [story.score(i, 0.85 if 5 <= i < 12 else 0.1) for i in range(80)]
    runs = [
        [(event.event_id, event.causation_id, event.payload()) for event in feed(engine(), windows)] for _ in range(2)
    ]
    assert runs[0] == runs[1] and len(runs[0]) >= 2
    assert len({event_id for event_id, _, _ in runs[0]}) == len(runs[0])


def test_restored_state_carries_on_with_the_same_incident() -> None:
    story = Scenario()
    before = engine(IncidentConfig(quiet_period_s=20, merge_gap_s=5))
    history = feed(before, [story.score(0, 0.8), story.score(1, 0.8)])
    after = engine(IncidentConfig(quiet_period_s=20, merge_gap_s=5))
    assert after.restore(history) == 1
    [opened] = of_type(history, IncidentOpened)
    assert after.active_incident(story.stream_id) == opened.incident_id
    events = feed(after, [story.score(2, 0.95, label="glass", extra_labels=(LabelScore(label="scream", score=0.9),))])
    assert of_type(events, IncidentOpened) == []
    assert [event.incident_id for event in of_type(events, IncidentEvent)] == [opened.incident_id] * len(events)
    assert of_type(events, IncidentEscalated)[0].to_severity == "critical"
    events = feed(after, [story.score(i) for i in range(3, 23)])
    assert [event.incident_id for event in of_type(events, IncidentResolved)] == [opened.incident_id]


def test_a_restart_keeps_the_cooldown_after_an_incident_closed_within_its_capture_run() -> None:
    story = Scenario()
    config = IncidentConfig(quiet_period_s=10, merge_gap_s=5, cooldown_s=30)
    history = feed(engine(config), [story.score(i, 0.8 if i in (3, 4) else 0.1) for i in range(16)])
    assert of_type(history, IncidentResolved)  # opened at 3 s, quiet from 4 s, resolved at 14 s
    after = engine(config)
    assert after.restore(history) == 0
    late_words = replace(story.score(5, 0.95, phrases=(HELP,)), occurred_at=story.at(20))
    assert of_type(feed(after, [story.score(16), late_words]), IncidentOpened) == []  # cooling down until >= 33 s
    assert of_type(feed(after, [story.score(i, 0.8) for i in (33, 34)]), IncidentOpened)
    restarted = Scenario(session_start=story.at(3600), correlation_id="session-2")
    fresh = engine(config)
    fresh.restore(history)
    assert of_type(feed(fresh, [restarted.score(0, 0.8), restarted.score(1, 0.8)]), IncidentOpened)  # a new run


def test_a_restored_incident_of_a_silent_stream_resolves_on_the_wall_clock() -> None:
    story = Scenario()
    history = feed(engine(), [story.score(0, 0.8), story.score(1, 0.8), story.score(2, 0.95, label="glass")])
    clock = FakeClock()
    after = engine(IncidentConfig(quiet_period_s=30), clock=clock)
    after.restore(history)
    clock.now += 30
    [resolved] = after.tick()
    assert isinstance(resolved, IncidentResolved)
    assert (resolved.incident_id, resolved.causation_id) == (
        of_type(history, IncidentOpened)[0].incident_id,
        history[-1].event_id,
    )


def test_folding_ignores_duplicates_and_forbidden_transitions() -> None:
    story = Scenario()
    history = feed(
        engine(IncidentConfig(quiet_period_s=5, merge_gap_s=5)),
        [story.score(i, 0.95 if i == 0 else 0.1) for i in range(8)],
    )
    [opened] = of_type(history, IncidentOpened)
    late_ack = IncidentMarkedFalseAlarm(
        stream_id=story.stream_id, incident_id=opened.incident_id, actor="ana", note="", occurred_at=story.at(60)
    )
    records = fold_incidents([*history, opened, late_ack])
    record: IncidentRecord = records[opened.incident_id]
    assert record.status == "false_alarm" and record.closed_by == "ana"  # allowed after a system resolution
    assert fold_incidents([*history, late_ack, late_ack])[opened.incident_id] == record


def test_the_stage_rebuilds_open_incidents_from_the_topic_after_a_restart(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = kafka_settings.model_copy(update={"data_dir": tmp_path})
    bus = settings.bus()
    bus.ensure_topics()
    story = Scenario(stream_id=f"ward-{uuid.uuid4().hex[:6]}")
    with bus.producer() as producer:
        for window in range(0, 6):
            producer.publish(story.chunk(window))
            producer.publish(story.score(window, 0.9 if window in (2, 3) else 0.1))
    stage = build_incident_stage(settings)
    runner = StageRunner(stage, bus, group_id=f"incidents-{uuid.uuid4()}")
    while stage.engine.active_incident(story.stream_id) is None:
        runner.run_once()
    runner.close()
    opened_id = stage.engine.active_incident(story.stream_id)

    restarted = build_incident_stage(settings)  # a new process: state comes from the incidents topic only
    assert restarted.engine.active_incident(story.stream_id) == opened_id
    with bus.producer() as producer:
        producer.publish(story.score(6, 0.95, phrases=(HELP,)))
    runner = StageRunner(restarted, bus, group_id=f"incidents-{uuid.uuid4()}")
    reader = bus.consumer(
        group_id=f"check-{uuid.uuid4()}", topics=[bus.catalogue.incidents.name], producer=runner.producer
    )
    seen: list[Event] = []
    while not of_type(seen, IncidentEscalated):
        runner.run_once()
        seen += [consumed.event for consumed in drain(reader, 1, timeout_s=1.0)]
    runner.close()
    reader.close()
    assert len(of_type(seen, IncidentOpened)) == 1  # the first runner's opening, not a second incident
    assert {getattr(event, "incident_id", None) for event in seen} == {opened_id}
    # the capture time of the onset window, or the time it was scored when its audio had not been consumed yet
    assert of_type(seen, IncidentOpened)[0].onset_at in (story.at(2), story.score(2).occurred_at)
