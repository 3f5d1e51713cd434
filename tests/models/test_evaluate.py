"""Evaluation: the benign-stream false alarms are counted both as raw windows and as the product's incidents."""

from __future__ import annotations

import numpy as np
import pytest

from cli.models import incident_counter
from models import synth
from models.classifier import DistressClassifier, default_checkpoint_path
from models.evaluate import IncidentCounter, benign_run


@pytest.fixture(scope="module")
def count_incidents() -> IncidentCounter:
    return incident_counter(default_checkpoint_path())


def _at_level(audio: np.ndarray, dbfs: float) -> np.ndarray:
    return (audio * (10 ** (dbfs / 20) / synth.rms(audio))).astype(np.float32)


def test_quiet_room_opens_no_incident_and_breaking_glass_does(count_incidents: IncidentCounter) -> None:
    rng = np.random.default_rng(21)
    room = _at_level(synth.room_tone(rng, 20 * 16000), -50)
    run = benign_run(DistressClassifier.load(), room, count_incidents)
    assert (run.windows_over_threshold, run.decisions, run.incidents) == (0, 0, 0)
    assert run.seconds == 20.0 and run.windows == len(range(0, 2000 - 96 + 1, 50))

    breaking = room.copy()
    for start_s in np.arange(8.0, 14.0, 0.8):
        shards = _at_level(synth.glass_break(rng)[:12000], -18)
        first = int(start_s * 16000)
        breaking[first : first + len(shards)] += shards
    assert count_incidents(breaking) >= 1
