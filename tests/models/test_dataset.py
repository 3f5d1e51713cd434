"""The dataset builder: determinism, by-source splitting, labelling rules, clear errors, synth helpers."""

from __future__ import annotations

import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from models.classifier import LABELS
from models.training import synth
from models.training.dataset import (
    CLIP_SAMPLES,
    SPLITS,
    Dataset,
    DatasetConfig,
    _recurring,
    assign_splits,
    benign_stream,
    build_dataset,
    event_stream,
    tiny_config,
)
from models.training.errors import DatasetError, MissingPackageError
from models.training.game_sounds import PACKAGE_LOCATIONS, classify, find_recordings
from models.training.voices import Voice, speak


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("distress-data")


@pytest.fixture(scope="module")
def tiny(data_dir: Path) -> Dataset:
    return build_dataset(tiny_config(), data_dir)


def test_tiny_dataset_has_every_label_in_every_split_as_one_second_clips(tiny: Dataset) -> None:
    config = tiny.config
    for split in SPLITS:
        clips = tiny.split(split)
        assert clips.audio.shape == (config.clips_per_label[split] * len(LABELS), CLIP_SAMPLES)
        assert clips.audio.dtype == np.int16
        assert sorted(set(clips.labels.tolist())) == list(range(len(LABELS)))
        # Clips are audible (not silent) and not clipped flat.
        levels = np.sqrt(np.mean(clips.audio.astype(np.float64) ** 2, axis=1)) / 32767
        assert np.all(levels > 10 ** (-75 / 20))
        assert np.all(np.abs(clips.audio).max(axis=1) < 32767)


def test_rebuilding_with_the_same_seed_gives_identical_clips(tiny: Dataset, data_dir: Path) -> None:
    shutil.rmtree(tiny.directory)  # keep the TTS cache, rebuild every clip
    again = build_dataset(tiny_config(), data_dir)
    for split in SPLITS:
        assert np.array_equal(again.split(split).audio, tiny.split(split).audio)
        assert again.split(split).source_ids == tiny.split(split).source_ids
    different = build_dataset(tiny_config(seed=2), data_dir)
    assert not np.array_equal(different.train.audio, tiny.train.audio)


def test_cached_dataset_is_loaded_not_rebuilt(tiny: Dataset, data_dir: Path) -> None:
    loaded = build_dataset(tiny_config(), data_dir)
    assert loaded.directory == tiny.directory
    assert np.array_equal(loaded.test.audio, tiny.test.audio)
    assert loaded.config == tiny.config


def test_no_source_appears_in_two_splits(tiny: Dataset) -> None:
    sources = {split: set(tiny.split(split).source_ids) for split in SPLITS}
    assert not sources["train"] & sources["validation"]
    assert not sources["train"] & sources["test"]
    assert not sources["validation"] & sources["test"]
    # Held-out material really is there: TTS voices and synthetic speakers in validation and test.
    for split in ("validation", "test"):
        assert any(s.startswith("tts-") for s in sources[split])
        assert any(s.startswith("synth:scream/") for s in sources[split])


def test_assign_splits_is_stratified_and_deterministic() -> None:
    config = DatasetConfig(seed=3)
    ids = [f"voice-{i}" for i in range(40)] + [f"speaker-{i}" for i in range(10)]
    families = ["tts"] * 40 + ["recorded-scream"] * 10
    first = assign_splits(ids, families, config)
    assert first == assign_splits(ids, families, config)
    assert set(first) == set(ids)
    for family_ids in (ids[:40], ids[40:]):
        counts = {split: sum(first[i] == split for i in family_ids) for split in SPLITS}
        assert counts["test"] == round(len(family_ids) * 0.15)
        assert counts["validation"] == round(len(family_ids) * 0.15)
    assert assign_splits(ids, families, DatasetConfig(seed=4)) != first
    with pytest.raises(DatasetError, match="two families"):
        assign_splits(["same", "same"], ["a", "b"], config)


def test_freedink_files_are_labelled_by_name() -> None:
    recordings = {Path(r.member).name: r for r in find_recordings(("freedink-data",))}
    assert recordings["wscream.wav"].label == "scream"
    assert recordings["bird1.wav"].label == "background" and recordings["bird1.wav"].animal
    assert not recordings["sel1.wav"].animal
    assert "punch.wav" not in recordings  # unmatched files are left out
    assert recordings["wscream.wav"].source_id == "freedink-data:wscream"


@pytest.mark.parametrize(
    ("package", "member", "expected"),
    [
        ("warzone2100-data", "audio/sfx/misc/help.ogg", ("shout", "warzone2100-data:help")),
        ("warzone2100-data", "audio/taunts/taunt3/tme2die3.ogg", None),
        ("warzone2100-data", "audio/taunts/taunt1/haha1.ogg", None),
        ("0ad-data", "audio/actor/human/death/female_death_03.ogg", ("scream", "0ad-data:human/death/female_death")),
        ("0ad-data", "audio/actor/human/death/death_11.ogg", ("scream", "0ad-data:human/death/death")),
        ("0ad-data", "audio/voice/latin/civ/civ_male_build_1.ogg", ("speech", "0ad-data:latin/civ/civ_male")),
        ("0ad-data", "audio/voice/latin/civ/civ_male_attack_1.ogg", None),
        ("0ad-data", "audio/resource/lumbering/lumbering_10.ogg", ("background", "0ad-data:resource/lumbering")),
        ("0ad-data", "audio/attack/destruction/building_collapse_large_01.ogg", ("impact", "0ad-data:destruction")),
        ("0ad-data", "audio/attack/impact/arrow_01.ogg", None),
        ("0ad-data", "audio/actor/fauna/death/goat_10.ogg", None),
        ("supertuxkart-data", "sfx/WilhelmScream.ogg", ("scream", "supertuxkart-data:wilhelmscream")),
        ("supertuxkart-data", "sfx/crash2.ogg", ("impact", "supertuxkart-data:crash")),
        ("supertuxkart-data", "sfx/hammer.ogg", ("background", "supertuxkart-data:hammer")),
        ("supertuxkart-data", "sfx/fireworks_show.ogg", None),
        ("supertuxkart-data", "tracks/scotland/sheep.ogg", ("background", "supertuxkart-data:tracks")),
        ("supertuxkart-data", "tracks/introcutscene2/nolok_speech.ogg", None),
    ],
)
def test_files_are_labelled_by_the_first_matching_rule(
    package: str, member: str, expected: tuple[str, str] | None
) -> None:
    assert classify(package, member) == expected


def test_missing_package_error_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PACKAGE_LOCATIONS, "nexuiz-data", ("/nonexistent/nexuiz/data.pk3",))
    with pytest.raises(MissingPackageError, match="apt-get install -y nexuiz-data"):
        find_recordings(("nexuiz-data",))
    with pytest.raises(DatasetError, match="unknown sound package"):
        find_recordings(("stepmania-data",))


def test_bad_config_is_rejected() -> None:
    with pytest.raises(DatasetError, match="clips_per_label"):
        DatasetConfig(clips_per_label={"train": 5, "validation": 0, "test": 1})
    with pytest.raises(DatasetError, match="fraction"):
        DatasetConfig(validation_fraction=0.5, test_fraction=0.4)
    with pytest.raises(DatasetError, match="train_animal_share"):
        DatasetConfig(train_animal_share=1.0)


def test_animal_calls_fill_a_share_of_the_training_beds_only(tiny: Dataset, data_dir: Path) -> None:
    plain = build_dataset(replace(tiny_config(), train_animal_share=0.0), data_dir)
    animals = build_dataset(replace(tiny_config(), train_animal_share=0.5), data_dir)

    def animal_beds(dataset: Dataset) -> int:
        return sum("freedink-data:bird1" in origin for origin in dataset.train.origins)

    assert animal_beds(animals) > animal_beds(plain) + len(animals.train) // 5
    for split in ("validation", "test"):  # held-out splits keep the natural mix, clip for clip
        assert np.array_equal(animals.split(split).audio, plain.split(split).audio)
    # A checkpoint or manifest written before the share existed was built without it, under the same digest.
    recorded = asdict(plain.config)
    del recorded["train_animal_share"]
    assert DatasetConfig.from_dict(recorded) == plain.config
    assert plain.config.digest() != tiny_config().digest()


def test_tts_is_deterministic(tmp_path: Path) -> None:
    voice = Voice("espeak", "en-us+f3")
    first = speak(voice, "Could you pass me the salt?", 50, 160, tmp_path)
    second = speak(voice, "Could you pass me the salt?", 50, 160, tmp_path)
    assert len(first) > 8000 and np.array_equal(first, second)


def test_benign_stream_is_continuous_audio_from_held_out_sources(tiny: Dataset, data_dir: Path) -> None:
    audio = benign_stream(tiny.config, 30.0, "test", data_dir)
    assert audio.shape == (30 * 16000,) and audio.dtype == np.float32
    assert np.max(np.abs(audio)) <= 1.0
    seconds = audio.reshape(30, 16000)
    assert np.all(np.sqrt(np.mean(seconds**2, axis=1)) > 0)  # never digital silence
    with pytest.raises(DatasetError, match="positive"):
        benign_stream(tiny.config, 0.0, "test", data_dir)


def test_spaced_one_shots_change_the_everyday_audio_but_not_the_clips(tiny: Dataset, data_dir: Path) -> None:
    spaced = replace(tiny.config, spaced_one_shots=True)
    assert spaced.digest() == tiny.config.digest() and "spaced_one_shots" not in tiny.config.recorded()
    assert DatasetConfig.from_dict(spaced.recorded()) == spaced
    assert build_dataset(spaced, data_dir).config == spaced  # the cached clips, with the config asked for
    looped = benign_stream(tiny.config, 300.0, "test", data_dir)
    assert np.array_equal(looped, benign_stream(replace(spaced, spaced_one_shots=False), 300.0, "test", data_dir))
    assert not np.array_equal(looped, benign_stream(spaced, 300.0, "test", data_dir))


def test_a_one_shot_recurs_after_pauses_instead_of_back_to_back() -> None:
    step = np.hanning(1600).astype(np.float32)  # a 0.1 s footstep
    segment = _recurring(step, 10 * 16000, np.random.default_rng(0))
    onsets = np.flatnonzero((segment[1:] > 0) & (segment[:-1] == 0)) + 1
    assert len(onsets) >= 3
    assert np.all(np.diff(onsets) >= 1600 + int(0.3 * 16000))  # the sound, then at least 0.3 s of pause
    assert np.all(np.diff(onsets) <= 1600 + 3 * 16000)


def test_event_stream_places_whole_distress_events_apart_in_the_split_context(tiny: Dataset, data_dir: Path) -> None:
    stream = event_stream(tiny.config, tiny.train, 60.0, "train", data_dir, seed=3)
    assert np.array_equal(stream.context, benign_stream(tiny.config, 60.0, "train", data_dir, seed=3))
    assert len(stream.events) >= 3
    distress = {LABELS.index(label) for label in ("shout", "scream", "crying", "glass", "impact")}
    previous_end = 0
    for event in stream.events:
        assert event.label in distress
        # One to three whole clips, each 3 s or more after the previous event and inside the stream.
        assert len(event.audio) in (CLIP_SAMPLES, 2 * CLIP_SAMPLES, 3 * CLIP_SAMPLES)
        assert event.start >= previous_end + 3 * 16000 - 1 and event.start + len(event.audio) <= len(stream.context)
        clip_rows = tiny.train.audio[tiny.train.labels == event.label].astype(np.float32) / 32767
        assert any(np.array_equal(event.audio[:CLIP_SAMPLES], row) for row in clip_rows)
        previous_end = event.start + len(event.audio)
    mixed = stream.mixed()
    first = stream.events[0]
    span = slice(first.start, first.start + len(first.audio))
    assert np.allclose(mixed[span], np.clip(stream.context[span] + first.audio, -1, 1))
    assert np.array_equal(mixed[: first.start], stream.context[: first.start])


# ------------------------------------------------------------------------------------------------ synth


def test_mix_at_snr_sets_the_power_ratio() -> None:
    rng = np.random.default_rng(0)
    foreground = synth.coloured_noise(rng, 16000, 0.0)
    background = synth.coloured_noise(rng, 16000, 1.0)
    mixed = synth.mix_at_snr(foreground, background, 10.0)
    residual = mixed - foreground
    assert 20 * np.log10(synth.rms(foreground) / synth.rms(residual)) == pytest.approx(10.0, abs=1e-3)
    with pytest.raises(ValueError, match="cannot mix"):
        synth.mix_at_snr(foreground, background[:100], 0.0)


def test_augmentations_keep_shape_and_reject_bad_parameters() -> None:
    rng = np.random.default_rng(1)
    clip = synth.scream(rng, synth.random_voice(rng, "adult_female"))
    rir = synth.synthetic_rir(rng, 0.5)
    assert np.sum(rir**2) == pytest.approx(1.0, rel=1e-4)
    assert synth.reverberate(clip, rir).shape == clip.shape
    assert len(synth.resample_shift(clip, 1.25)) == pytest.approx(len(clip) / 1.25, abs=2)
    with pytest.raises(ValueError, match="rt60"):
        synth.synthetic_rir(rng, 0.0)
    with pytest.raises(ValueError, match="resample factor"):
        synth.resample_shift(clip, 3.0)


def test_synthetic_scream_is_high_pitched_and_glass_is_bright() -> None:
    rng = np.random.default_rng(2)
    scream = synth.scream(rng, {"f0": 900.0, "formant_scale": 1.2, "roughness": 0.0})
    spectrum = np.abs(np.fft.rfft(scream))
    freqs = np.fft.rfftfreq(len(scream), 1 / 16000)
    assert 600 < freqs[np.argmax(spectrum)] < 2400  # the strongest harmonic is well above speech F0
    glass = synth.glass_break(rng)
    glass_spectrum = np.abs(np.fft.rfft(glass)) ** 2
    glass_freqs = np.fft.rfftfreq(len(glass), 1 / 16000)
    assert glass_spectrum[glass_freqs > 2000].sum() > glass_spectrum[glass_freqs < 1000].sum()
