"""The offline chain behind `distress detect` decides as the live pipeline does: same stages, same chunking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from actors.offline import Detector
from config import load_settings
from events.catalogue import DistressScored
from models.yamnet_head import default_head_path


@pytest.mark.parametrize(("chunk_seconds", "windows"), [(1.0, 6), (0.5, 11)])
def test_detect_scores_a_window_per_configured_chunk(tmp_path: Path, chunk_seconds: float, windows: int) -> None:
    recording = tmp_path / "room.wav"
    soundfile.write(recording, (0.01 * np.random.default_rng(3).standard_normal(6 * 16_000)).astype(np.float32), 16_000)
    settings = load_settings()
    settings = settings.model_copy(
        update={"capture": settings.capture.model_copy(update={"chunk_seconds": chunk_seconds})}
    )

    scored = [
        event for event in Detector(settings, with_asr=False).events(recording) if isinstance(event, DistressScored)
    ]

    # A patch needs 96 frames (~1 s of audio); from then on every chunk ends one scored window.
    assert len(scored) == windows
    assert np.diff([event.sample_offset for event in scored]).tolist() == [chunk_seconds * 16_000] * (windows - 1)


def test_detect_with_the_yamnet_head_scores_yamnet_frames_with_it(tmp_path: Path) -> None:
    """The checkpoint's kind sets the features' front end and the scorer's, for every recording the detector runs
    (a scorer reading another kind of frames would score none)."""
    recording = tmp_path / "room.wav"
    soundfile.write(recording, (0.01 * np.random.default_rng(3).standard_normal(4 * 16_000)).astype(np.float32), 16_000)
    settings = load_settings(scorer={"model_path": str(default_head_path())})
    detector = Detector(settings, with_asr=False)
    for _ in range(2):  # each recording gets a scorer of its own, reading the same kind of frames
        scored = [event for event in detector.events(recording) if isinstance(event, DistressScored)]
        assert len(scored) == 4 and {event.model_id for event in scored} == {"distress-yamnet"}
