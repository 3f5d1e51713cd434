"""Evaluation: the benign-stream false alarms are counted both as raw windows and as the product's incidents."""

from __future__ import annotations

import numpy as np
import pytest

from cli.models import product_chain
from models.classifier import LABELS, DistressClassifier, default_checkpoint_path
from models.training import synth
from models.training.dataset import ClipSet
from models.training.evaluate import ProductChain, SourceScore, benign_run, event_recall, source_scores


@pytest.fixture(scope="module")
def chain() -> ProductChain:
    return product_chain(default_checkpoint_path())


def _at_level(audio: np.ndarray, dbfs: float) -> np.ndarray:
    return (audio * (10 ** (dbfs / 20) / synth.rms(audio))).astype(np.float32)


def test_quiet_room_opens_no_incident_and_breaking_glass_does(chain: ProductChain) -> None:
    rng = np.random.default_rng(21)
    room = _at_level(synth.room_tone(rng, 20 * 16000), -50)
    run = benign_run(DistressClassifier.load(), room, chain)
    assert (run.windows_over_threshold, run.decisions, run.incidents) == (0, 0, 0)
    assert run.seconds == 20.0 and run.windows == len(range(0, 2000 - 96 + 1, 50))

    breaking = room.copy()
    for start_s in np.arange(8.0, 14.0, 0.8):
        shards = _at_level(synth.glass_break(rng)[:12000], -18)
        first = int(start_s * 16000)
        breaking[first : first + len(shards)] += shards
    # Opened at the breaking glass, and taken for breaking glass: the label a false alarm is counted under.
    assert any(8.0 - 1.0 <= incident.onset_s <= 14.0 and incident.top_label == "glass" for incident in chain(breaking))


def test_event_recall_counts_the_events_that_open_an_incident_at_the_event(chain: ProductChain) -> None:
    rng = np.random.default_rng(5)
    glass = [_at_level(synth.glass_break(rng)[:16000], -18) for _ in range(3)]
    hush = [_at_level(synth.room_tone(rng, 16000), -55) for _ in range(3)]
    clips = ClipSet(
        audio=np.round(np.stack([np.resize(clip, 16000) for clip in glass + hush]) * 32767).astype(np.int16),
        labels=np.array([LABELS.index("glass")] * 3 + [LABELS.index("scream")] * 3),
        source_ids=("synth:glass/test",) * 3 + ("quiet-speaker",) * 3,
        origins=("glass",) * 3 + ("hush",) * 3,
    )
    context = _at_level(synth.room_tone(rng, 40 * 16000), -50)

    recall = event_recall(clips, context, chain, events_per_label=2, clips_per_event=2)

    # Labels without clips are left out; a silent "scream" opens nothing, breaking glass does.
    assert recall.events == {"scream": 2, "glass": 2} and recall.event_seconds == 2.0
    assert recall.caught == {"scream": 0, "glass": 2} and recall.recall == 0.5
    with pytest.raises(ValueError, match="too short for one event"):
        event_recall(clips, context[: 10 * 16000], chain, events_per_label=1)


def test_source_scores_count_each_sources_clips_at_or_over_the_point() -> None:
    labels = ["shout", "shout", "shout", "speech", "speech", "scream"]
    clips = ClipSet(
        audio=np.zeros((len(labels), 16000), dtype=np.int16),
        labels=np.array([LABELS.index(label) for label in labels]),
        source_ids=("a", "a", "b", "c", "c", "a"),
        origins=("x",) * len(labels),
    )
    scores = source_scores(clips, np.array([0.9, 0.5, 0.7, 0.7, 0.1, 0.69]), point=0.7)
    assert scores == (
        SourceScore("scream", "a", clips=1, over_point=0),
        SourceScore("shout", "a", clips=2, over_point=1),
        SourceScore("shout", "b", clips=1, over_point=1),
        SourceScore("speech", "c", clips=2, over_point=1),
    )
    assert scores[1].share_over_point == 0.5
