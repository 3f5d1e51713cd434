"""Comparing checkpoints: the benign hours' seeds, and refusing checkpoints whose held-out clips differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.training.compare import benign_seeds, common_split, split_digest
from models.training.dataset import CLIP_SAMPLES, ClipSet, Dataset, tiny_config
from models.training.evaluate import EVENT_CONTEXT_SEED


def _clips(seed: int, n: int = 4) -> ClipSet:
    rng = np.random.default_rng(seed)
    return ClipSet(
        audio=rng.integers(-1000, 1000, size=(n, CLIP_SAMPLES), dtype=np.int16),
        labels=np.arange(n, dtype=np.int64),
        source_ids=tuple(f"source-{i}" for i in range(n)),
        origins=("test",) * n,
    )


def _dataset(train: int, validation: int, test: int) -> Dataset:
    return Dataset(_clips(train), _clips(validation), _clips(test), Path("unused"), tiny_config(seed=5))


def test_each_benign_hour_has_its_own_seed_and_none_is_the_events_context() -> None:
    assert benign_seeds(0) == []
    assert benign_seeds(3) == [0, 2, 3]
    seeds = benign_seeds(15)
    assert len(set(seeds)) == 15 and EVENT_CONTEXT_SEED not in seeds


def test_checkpoints_compare_when_their_datasets_share_the_split() -> None:
    # Different training clips (as with training-only voices) but the same validation clips: comparable.
    datasets = [_dataset(1, 2, 3), _dataset(9, 2, 3)]
    shared = common_split(datasets, [Path("a.pt"), Path("b.pt")], "validation")
    assert split_digest(shared) == split_digest(datasets[1].validation)


def test_checkpoints_whose_split_differs_are_refused_by_name() -> None:
    datasets = [_dataset(1, 2, 3), _dataset(1, 2, 3), _dataset(1, 7, 3)]
    checkpoints = [Path("a.pt"), Path("b.pt"), Path("c.pt")]
    assert split_digest(common_split(datasets, checkpoints, "test")) == split_digest(datasets[0].test)
    with pytest.raises(ValueError, match=r"c\.pt was trained for a dataset whose validation split differs .*a\.pt"):
        common_split(datasets, checkpoints, "validation")


def test_relabelled_clips_change_the_split_digest() -> None:
    clips = _clips(2)
    relabelled = ClipSet(clips.audio, clips.labels[::-1].copy(), clips.source_ids, clips.origins)
    assert split_digest(clips) != split_digest(relabelled)
