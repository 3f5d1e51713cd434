"""YAMNet backbone: checked files, YAMNet's front end and framing, the float graph against the shipped one on real
recorded sounds (freedink-data effects, espeak-ng and festival speech), and the zero-shot label mapping."""

from __future__ import annotations

import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile

from models import yamnet
from models.features import log_mel
from models.training.game_sounds import PACKAGE_LOCATIONS, find_recordings, read_recording, to_mono_16k
from models.training.voices import Voice, speak

Audio = np.ndarray
SENTENCE = "The meeting starts at ten in the morning, please be on time."
SPEAKERS = (Voice("espeak", "en"), Voice("espeak", "en-us+f3"), Voice("festival", "kal_diphone"))
CONFIDENT = 0.3  # a patch either graph scores at least this high for some class


@pytest.fixture(scope="module")
def models() -> dict[str, yamnet.Yamnet]:
    return {variant: yamnet.Yamnet.load(variant=variant) for variant in ("float", "quantized")}


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Audio]:
    folder = tmp_path_factory.mktemp("speech")
    return {voice.source_id: speak(voice, SENTENCE, 50, 160, folder) for voice in SPEAKERS}


@pytest.fixture(scope="module")
def effects() -> dict[str, Audio]:
    """Every recorded effect (.wav) of freedink-data: screams, grunts, hits, doors, fire, a bird."""
    folder = Path(PACKAGE_LOCATIONS["freedink-data"][0])
    sounds = {}
    for path in sorted(folder.glob("*.wav")):
        samples, rate = soundfile.read(path, dtype="float32")
        sounds[path.stem] = to_mono_16k(samples, rate)
    return sounds


@pytest.mark.parametrize("name", [yamnet.MODEL_ARCHIVE, yamnet.CLASS_MAP])
def test_a_file_with_another_sha256_is_refused_by_name(tmp_path: Path, name: str) -> None:
    for original in (yamnet.MODEL_ARCHIVE, yamnet.CLASS_MAP):
        shutil.copy(yamnet.data_directory() / original, tmp_path / original)
    altered = bytearray((tmp_path / name).read_bytes())
    altered[len(altered) // 2] ^= 1
    (tmp_path / name).write_bytes(bytes(altered))
    with pytest.raises(yamnet.YamnetError, match=rf"{tmp_path / name} has sha256 [0-9a-f]{{64}}, expected"):
        yamnet.Yamnet.load(tmp_path)


def test_a_folder_without_the_files_says_which_is_missing(tmp_path: Path) -> None:
    with pytest.raises(yamnet.YamnetError, match=rf"cannot read YAMNet file {tmp_path / yamnet.CLASS_MAP}"):
        yamnet.Yamnet.load(tmp_path)


def test_front_end_is_yamnets_magnitude_log_mel() -> None:
    """ln(HTK mel of the 512-point FFT magnitude of 25 ms periodic-Hann frames + 0.001), built with librosa."""
    signal = (0.1 * np.random.default_rng(3).standard_normal(16000)).astype(np.float32)
    frames = librosa.util.frame(signal, frame_length=400, hop_length=160, axis=0)
    magnitude = np.abs(np.fft.rfft(frames * scipy.signal.get_window("hann", 400, fftbins=True), n=512))
    bands = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=125.0, fmax=7500.0, htk=True, norm=None)
    np.testing.assert_allclose(log_mel(signal, yamnet.FRONT_END), np.log(magnitude @ bands.T + 0.001), atol=1e-4)


def test_a_short_sound_is_padded_to_one_patch() -> None:
    sound = (0.5 * np.sin(2 * np.pi * 440 * np.arange(4800) / 16000)).astype(np.float32)  # 0.3 s
    patches = yamnet.patches(sound)
    assert patches.shape == (1, 96, 64) and patches.dtype == np.float32
    whole_frames = yamnet.FRONT_END.frames_in(sound.size)
    np.testing.assert_array_equal(patches[0, :whole_frames], log_mel(sound, yamnet.FRONT_END))
    after = sound.size // yamnet.FRONT_END.hop_length  # the first frame that starts after the sound
    np.testing.assert_allclose(patches[0, after:], np.log(0.001), rtol=1e-6)


@pytest.mark.parametrize(
    ("samples", "expected"), [(0, 1), (15600, 1), (15601, 2), (15600 + 7680, 2), (15600 + 7681, 3), (160000, 20)]
)
def test_patches_cover_the_clip_every_048_s(samples: int, expected: int) -> None:
    assert yamnet.patches(np.zeros(samples, dtype=np.float32)).shape == (expected, 96, 64)


def test_one_run_gives_scores_and_embeddings_whatever_the_batch(
    models: dict[str, yamnet.Yamnet], effects: dict[str, Audio]
) -> None:
    patches = yamnet.patches(effects["fire"])
    for model in models.values():
        scores, embeddings = model.run(patches)
        assert scores.shape == (len(patches), 521) and embeddings.shape == (len(patches), 1024)
        assert ((scores >= 0) & (scores <= 1)).all()
        one_by_one = [model.run(patches[index : index + 1]) for index in range(len(patches))]
        np.testing.assert_allclose(scores, np.concatenate([s for s, _ in one_by_one]), atol=1e-5)
        np.testing.assert_allclose(embeddings, np.concatenate([e for _, e in one_by_one]), atol=1e-4)
        np.testing.assert_array_equal(model.scores(patches), scores)
        np.testing.assert_array_equal(model.embeddings(patches), embeddings)


def test_float_graph_keeps_the_shipped_graphs_top_classes(
    models: dict[str, yamnet.Yamnet], effects: dict[str, Audio], speech: dict[str, Audio]
) -> None:
    """On every patch of real sounds that either graph is confident about, each graph's top class is among the
    other's three best (the shipped graph's logits step by 0.76, so its first place is often a tie)."""
    patches = np.concatenate([yamnet.patches(sound) for sound in (*effects.values(), *speech.values())])
    exact = models["float"].scores(patches)
    shipped = models["quantized"].scores(patches)
    confident = np.maximum(exact.max(axis=1), shipped.max(axis=1)) >= CONFIDENT
    assert confident.sum() >= 50
    for scores, other in ((exact, shipped), (shipped, exact)):
        top = scores.argmax(axis=1)
        in_other_top3 = (np.argsort(-other, axis=1)[:, :3] == top[:, None]).any(axis=1)
        assert in_other_top3[confident].mean() >= 0.95


def test_speech_is_speech(models: dict[str, yamnet.Yamnet], speech: dict[str, Audio]) -> None:
    for model in models.values():
        for voice, audio in speech.items():
            mean = model.scores(yamnet.patches(audio)).mean(axis=0)
            assert model.class_names[int(mean.argmax())] == "Speech", voice


def test_a_recorded_scream_scores_as_a_scream(models: dict[str, yamnet.Yamnet]) -> None:
    (scream,) = [r for r in find_recordings(("freedink-data",)) if r.label == "scream"]
    labels = yamnet.zero_shot_distress(models["float"].scores(yamnet.patches(read_recording(scream))))
    best = max(labels, key=lambda label: float(labels[label].max()))
    assert best == "scream" and labels["scream"].max() > 0.5


def test_each_label_scores_its_best_audioset_class() -> None:
    scores = np.zeros((len(yamnet.ZERO_SHOT_CLASSES), 521), dtype=np.float32)
    for row, classes in enumerate(yamnet.ZERO_SHOT_CLASSES.values()):
        first, *others = classes
        scores[row, first] = 0.9
        scores[row, others] = 0.2
        scores[row, 0] = 1.0  # Speech belongs to no label
    labels = yamnet.zero_shot_distress(scores)
    assert list(labels) == ["scream", "shout", "crying", "glass", "impact", "gunshot", "alarm"]
    for row, label in enumerate(labels):
        np.testing.assert_allclose(labels[label], np.where(np.arange(len(labels)) == row, 0.9, 0.0))
