"""Reproducible training data for the distress classifier, built only from what package registries ship.

Sources are of three kinds:

* **recorded game sounds** from Debian data packages, labelled by their file names
  (:mod:`models.training.game_sounds`);
* **TTS voices** (espeak-ng accents x voice variants, flite, festival) speaking everyday sentences, and the
  same voices "shouting" distress calls (raised pitch and formants, less spectral tilt, overdrive)
  (:mod:`models.training.voices`);
* **synthesised** screams, cries, impacts, glass and backgrounds from :mod:`models.training.synth`.

Every source has a ``source_id`` (a package + speaker/file group, a TTS voice, a synthetic speaker). Sources,
not clips, are assigned to train/validation/test, so validation and test measure generalisation to unheard
voices and recordings. Each labelled 1 s clip is a foreground placed over a background bed from the *same
split*, with reverb, channel colouring, pitch/tempo change and gain. Nothing is downloaded or installed here:
missing Debian packages raise :class:`~models.training.errors.MissingPackageError` naming them.

One module of ~780 lines, as the split builder and the streams share the per-split material and its caches.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import soundfile

from domain.audio import SAMPLE_RATE
from domain.labels import DISTRESS_LABELS, SOUND_LABELS
from models.classifier import LABELS
from models.training import synth
from models.training.errors import DatasetError
from models.training.game_sounds import Recording, find_recordings, read_recording
from models.training.synth import Audio, Rng
from models.training.voices import EVERYDAY_SENTENCES, SHOUTED_PHRASES, Voice, available_voices, make_shouted, speak

CLIP_SAMPLES = SAMPLE_RATE
DEFAULT_DATA_DIR = Path(".local/data")
DATASET_VERSION = "3"
Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")


# -------------------------------------------------------------------------------------------- configuration

ALL_SOUND_PACKAGES = (
    "openarena-data",
    "openarena-088-data",
    "nexuiz-data",
    "warzone2100-data",
    "megaglest-data",
    "freedink-data",
    "0ad-data",
    "supertuxkart-data",
)
# Permitted for training and validation by issue #30 (dataset 4); every other data package stays reserved for
# independent evaluation.
MORE_SOUND_PACKAGES = (
    "teeworlds-data",
    "freedoom",
    "widelands-data",
    "flare-game",
    "supertux-data",
    "tuxpaint-data",
    "frozen-bubble-data",
    "pingus-data",
    "lincity-ng-data",
)
# A recording labelled with a label the dataset does not have counts as this one (gunshot and alarm came later).
LABEL_FALLBACK = {"gunshot": "impact", "alarm": "background"}


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that determines the dataset; its hash names the cache directory."""

    seed: int = 20260522
    clips_per_label: dict[str, int] = field(default_factory=lambda: {"train": 2000, "validation": 500, "test": 500})
    sound_packages: tuple[str, ...] = ALL_SOUND_PACKAGES
    espeak_voices: int = 60
    sentences_per_voice: int = 10
    shouts_per_voice: int = 8
    synthetic_speakers: int = 60
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    # Training background beds drawn from the split's animal calls first (validation and test keep the natural
    # mix), as the model took chickens, birds and livestock for screams (docs/model-history.md, 1.5.0).
    train_animal_share: float = 0.15
    # The labels clips are made for (their index is the clip's label); distress-cnn 1.x has the first seven.
    labels: tuple[str, ...] = LABELS
    # Every source of a label as likely as any other, whichever kind it is (recorded, TTS, synthetic), so
    # that no single voice dominates a label; dataset 3 weighted the kinds instead.
    balanced_by_source: bool = False
    # Everyday audio only (it changes no clip, so the cache directory's name leaves it out): a recorded sound
    # shorter than its scene (a footstep, a door) recurs after natural pauses instead of being looped back to
    # back, which turned a footstep into a rapid train that YAMNet and the head hear as gunfire (docs/yamnet.md).
    spaced_one_shots: bool = False

    def __post_init__(self) -> None:
        if set(self.clips_per_label) != set(SPLITS) or min(self.clips_per_label.values()) < 1:
            raise DatasetError(f"clips_per_label needs a positive count for each of {SPLITS}: {self.clips_per_label}")
        if not 0 < self.validation_fraction + self.test_fraction < 0.8:
            raise DatasetError("validation_fraction + test_fraction must be in (0, 0.8)")
        if not 0 <= self.train_animal_share < 1:
            raise DatasetError(f"train_animal_share must be in [0, 1), got {self.train_animal_share}")
        if unknown := [label for label in self.labels if label not in SOUND_LABELS]:
            raise DatasetError(f"unknown label(s) {unknown}; known labels are {SOUND_LABELS}")
        if self.labels[:2] != ("background", "speech"):
            raise DatasetError(f"labels must start with background and speech, got {self.labels}")

    def recorded(self) -> dict[str, Any]:
        """The config as a manifest or a checkpoint records it: fields at the values they had before they existed
        are left out, so datasets and checkpoints made before keep their names and bytes."""
        fields = asdict(self)
        if not self.train_animal_share:
            del fields["train_animal_share"]
        if self.labels == LABELS:
            del fields["labels"]
        if not self.balanced_by_source:
            del fields["balanced_by_source"]
        if not self.spaced_one_shots:
            del fields["spaced_one_shots"]
        return fields

    def digest(self) -> str:
        clips = {name: value for name, value in self.recorded().items() if name != "spaced_one_shots"}
        payload = json.dumps({"version": DATASET_VERSION, **clips}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DatasetConfig:
        """The config recorded (as ``asdict``) in a dataset manifest or a checkpoint's metadata; one recorded
        before ``train_animal_share`` existed had none."""
        return cls(
            **{
                "train_animal_share": 0.0,
                **raw,
                "sound_packages": tuple(raw["sound_packages"]),
                "labels": tuple(raw.get("labels", LABELS)),
            }
        )

    def distress_targets(self, label_indices: npt.NDArray[np.integer]) -> npt.NDArray[np.float32]:
        """1.0 for clips whose label (an index into ``labels``) is a distress label, else 0.0."""
        is_distress = np.array([label in DISTRESS_LABELS for label in self.labels], dtype=np.float32)
        targets: npt.NDArray[np.float32] = is_distress[label_indices]
        return targets


def dataset_4(seed: int = 20261206) -> DatasetConfig:
    """Dataset 4 (issue #30): all nine labels, the nine more permitted packages, every source equally likely."""
    return DatasetConfig(
        seed=seed,
        clips_per_label={"train": 1200, "validation": 400, "test": 400},
        sound_packages=ALL_SOUND_PACKAGES + MORE_SOUND_PACKAGES,
        labels=SOUND_LABELS,
        balanced_by_source=True,
        spaced_one_shots=True,
    )


def tiny_config(seed: int = 1) -> DatasetConfig:
    """A seconds-long build for tests: few voices, one small sound package, a handful of clips per label."""
    return DatasetConfig(
        seed=seed,
        clips_per_label={"train": 6, "validation": 3, "test": 3},
        sound_packages=("freedink-data",),
        espeak_voices=6,
        sentences_per_voice=2,
        shouts_per_voice=2,
        synthetic_speakers=6,
    )


# ------------------------------------------------------------------------------------------------ splitting


def _unit_hash(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(source_ids: Sequence[str], families: Sequence[str], config: DatasetConfig) -> dict[str, Split]:
    """Deterministically assign each source to a split, stratified by family.

    Within each family (e.g. "scream recordings", "TTS voices") sources are ordered by a seeded hash and the
    first ``test_fraction`` go to test, the next ``validation_fraction`` to validation — at least one each
    when the family has three or more sources — so every split sees every kind of source but never the same
    one.
    """
    by_family: dict[str, list[str]] = defaultdict(list)
    for source_id, family in zip(source_ids, families, strict=True):
        by_family[family].append(source_id)
    assignment: dict[str, Split] = {}
    for family, members in by_family.items():
        ordered = sorted(members, key=lambda s: _unit_hash(config.seed, f"{family}/{s}"))
        n = len(ordered)
        n_test = max(1 if n >= 3 else 0, round(n * config.test_fraction))
        n_val = max(1 if n >= 3 else 0, round(n * config.validation_fraction))
        for i, source_id in enumerate(ordered):
            if source_id in assignment:
                raise DatasetError(f"source {source_id} belongs to two families")
            assignment[source_id] = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
    return assignment


# -------------------------------------------------------------------------------------------- clip assembly


@dataclass(frozen=True)
class ClipSet:
    """Labelled 1 s clips of one split: int16 audio plus label index, source id and origin per clip."""

    audio: npt.NDArray[np.int16]
    labels: npt.NDArray[np.int64]
    source_ids: tuple[str, ...]
    origins: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.audio.shape != (n, CLIP_SAMPLES) or len(self.source_ids) != n or len(self.origins) != n:
            raise DatasetError(
                f"inconsistent clip set: audio {self.audio.shape}, {n} labels, "
                f"{len(self.source_ids)} source ids, {len(self.origins)} origins"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def waveform(self, index: int) -> Audio:
        samples: Audio = self.audio[index].astype(np.float32) / np.float32(32767.0)
        return samples


@dataclass(frozen=True)
class Dataset:
    """The three splits and where they are cached."""

    train: ClipSet
    validation: ClipSet
    test: ClipSet
    directory: Path
    config: DatasetConfig

    def split(self, name: str) -> ClipSet:
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; expected one of {SPLITS}")
        clips: ClipSet = getattr(self, name)
        return clips


# A way to make one sound: returns (audio, source id, origin detail for the manifest).
Producer = Callable[[Rng], tuple[Audio, str, str]]


def _active_window(rng: Rng, audio: Audio, length: int) -> Audio:
    """A ``length``-sample window of ``audio`` where the sound is active; short sounds go in at random."""
    if len(audio) <= length:
        out = np.zeros(length, dtype=np.float32)
        offset = int(rng.integers(0, length - len(audio) + 1))
        out[offset : offset + len(audio)] = audio
        return out
    hop = SAMPLE_RATE // 20
    starts = np.arange(0, len(audio) - length + 1, hop)
    cumulative = np.concatenate([[0.0], np.cumsum(np.square(audio, dtype=np.float64))])
    energy = cumulative[starts + length] - cumulative[starts]
    candidates = starts[energy >= 0.25 * energy.max()]
    start = int(rng.choice(candidates)) + int(rng.integers(0, hop))
    start = min(start, len(audio) - length)
    return audio[start : start + length]


def _trim_silence(audio: Audio) -> Audio:
    """Drop leading/trailing parts more than 40 dB below the peak so silence is not labelled as a scream."""
    if audio.size == 0:
        return audio
    frame = 160
    n = len(audio) // frame
    if n == 0:
        return audio
    levels = np.abs(audio[: n * frame]).reshape(n, frame).max(axis=1)
    loud = np.flatnonzero(levels > levels.max() * 0.01)
    if loud.size == 0:
        return audio
    return audio[loud[0] * frame : (loud[-1] + 1) * frame]


class _SplitMaterial:
    """The sources of one split and the producers that turn them into foregrounds and background beds."""

    def __init__(
        self,
        split: Split,
        recordings: list[Recording],
        voices: list[Voice],
        speakers: dict[str, list[str]],
        tts: dict[str, dict[str, list[Audio]]],
        animal_share: float = 0.0,
        labels: tuple[str, ...] = LABELS,
        balanced_by_source: bool = False,
    ) -> None:
        self.split = split
        self.labels = labels
        self.balanced_by_source = balanced_by_source
        self.animal_share = animal_share
        animals: dict[str, list[Recording]] = defaultdict(list)
        for rec in recordings:
            if rec.animal:
                animals[rec.source_id].append(rec)
        self.animal_call = _uniform_over_sources(animals) if animal_share > 0 else None
        self.recordings_by_label: dict[str, dict[str, list[Recording]]] = defaultdict(lambda: defaultdict(list))
        for rec in recordings:
            self.recordings_by_label[rec.label][rec.source_id].append(rec)
        self.recorded_background = self.recorded("background")  # built once: every clip draws a bed or two
        self.voices = voices
        self.speakers = speakers
        self.tts = tts

    def recorded(self, label: str) -> Producer | None:
        return _uniform_over_sources(self.recordings_by_label.get(label, {}))

    def background_bed(self, rng: Rng) -> tuple[Audio, str, str]:
        """A 1 s everyday background: synthetic noise/hum/music/room tone, recorded ambience, or babble; in the
        training split, ``animal_share`` of them an animal call (what the model otherwise takes for a scream)."""
        if self.animal_call is not None and rng.random() < self.animal_share:
            audio, source_id, origin = self.animal_call(rng)
            return _active_window(rng, audio, CLIP_SAMPLES), source_id, origin
        choice = rng.random()
        if choice < 0.45 and self.recorded_background is not None:
            audio, source_id, origin = self.recorded_background(rng)
            return _active_window(rng, audio, CLIP_SAMPLES), source_id, origin
        if choice < 0.6 and self.voices:
            return self.babble(rng), f"tts:babble/{self.split}", "babble"
        beds: dict[str, Callable[[Rng], Audio]] = {
            "noise": lambda r: synth.coloured_noise(r, CLIP_SAMPLES, float(r.uniform(-1.0, 2.0))),
            "hum": lambda r: synth.mains_hum(r, CLIP_SAMPLES),
            "music": lambda r: synth.music_like(r, CLIP_SAMPLES),
            "room": lambda r: synth.room_tone(r, CLIP_SAMPLES),
        }
        kind = sorted(beds)[int(rng.integers(0, len(beds)))]
        return self.synthetic(kind, beds[kind])(rng)

    def spoken(self, kind: str) -> Producer | None:
        names = [v.source_id for v in self.voices if self.tts[v.source_id][kind]]
        if not names:
            return None

        def produce(rng: Rng) -> tuple[Audio, str, str]:
            name = names[int(rng.integers(0, len(names)))]
            pool = self.tts[name][kind]
            index = int(rng.integers(0, len(pool)))
            audio = pool[index] if kind == "speech" else make_shouted(rng, pool[index])
            return audio, name, f"{kind}-{index}"

        return produce

    def synthetic_voice(self, label: str) -> Producer | None:
        names = self.speakers.get(label, [])
        if not names:
            return None

        def produce(rng: Rng) -> tuple[Audio, str, str]:
            name = names[int(rng.integers(0, len(names)))]
            params = _speaker_parameters(name)
            audio = synth.scream(rng, params) if label == "scream" else synth.cry(rng, params)
            return audio, name, label

        return produce

    def babble(self, rng: Rng) -> Audio:
        """Several overlapping talkers from this split's voices: a cafe or open-office bed."""
        names = [v.source_id for v in self.voices if self.tts[v.source_id]["speech"]]
        out = np.zeros(CLIP_SAMPLES, dtype=np.float32)
        for _ in range(int(rng.integers(3, 8))):
            pool = self.tts[names[int(rng.integers(0, len(names)))]]["speech"]
            talker = _active_window(rng, pool[int(rng.integers(0, len(pool)))], CLIP_SAMPLES)
            out += talker / max(1e-6, synth.rms(talker)) * float(rng.uniform(0.5, 1.0))
        return out

    def synthetic(self, kind: str, make: Callable[[Rng], Audio]) -> Producer:
        """A procedural generator; its draws are seeded per split, so its "source" is named per split too."""
        return lambda rng: (make(rng), f"synth:{kind}/{self.split}", kind)


def _uniform_over_sources(sources: Mapping[str, list[Recording]]) -> Producer | None:
    """Draws a source, then one of its files: every source is as likely, however many files it has."""
    if not sources:
        return None
    names = sorted(sources)

    def produce(rng: Rng) -> tuple[Audio, str, str]:
        files = sources[names[int(rng.integers(0, len(names)))]]
        rec = files[int(rng.integers(0, len(files)))]
        return _trim_silence(_cached_recording(rec)), rec.source_id, rec.member

    return produce


@cache
def _cached_recording(recording: Recording) -> Audio:
    return read_recording(recording)


def _speaker_parameters(name: str) -> dict[str, float]:
    """Parameters of a synthetic speaker, derived from its name so every split and run agree."""
    kind = name.split(":")[1].split("/")[1].rsplit("-", 1)[0]
    rng = np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:12], 16))
    return synth.sob_voice(rng) if kind == "adult_sob" else synth.random_voice(rng, kind)


def _synthetic_speakers(count: int) -> dict[str, list[str]]:
    scream_kinds = ("adult_male", "adult_female", "adult_female", "child")
    cry_kinds = ("infant", "adult_sob")
    return {
        "scream": [f"synth:scream/{scream_kinds[i % len(scream_kinds)]}-{i}" for i in range(count)],
        "crying": [f"synth:crying/{cry_kinds[i % len(cry_kinds)]}-{i}" for i in range(count)],
    }


def _one_of(*makers: Callable[[Rng], Audio]) -> Callable[[Rng], Audio]:
    return lambda rng: makers[int(rng.integers(0, len(makers)))](rng)


def _foreground_producers(material: _SplitMaterial, label: str) -> list[tuple[float, Producer]]:
    """Weighted ways to make a foreground of ``label``; recorded sources are preferred where they exist, or with
    ``balanced_by_source`` each producer is weighted by its number of sources, so every source is as likely."""
    guns_apart = "gunshot" in material.labels
    synthetic_events: dict[str, Callable[[Rng], Audio]] = {
        "glass": synth.glass_break,
        "impact": synth.slam if guns_apart else _one_of(synth.gunshot, synth.explosion, synth.slam),
        "gunshot": _one_of(synth.gunshot, synth.explosion),
        "alarm": _one_of(synth.smoke_alarm, synth.siren),
    }
    recorded_sources = len(material.recordings_by_label.get(label, {}))
    producers: list[tuple[float, float, Producer | None]] = []  # (weight, number of sources, producer)
    if label in ("scream", "crying"):
        speakers = len(material.speakers.get(label, []))
        producers = [
            (0.5, recorded_sources, material.recorded(label)),
            (0.5, speakers, material.synthetic_voice(label)),
        ]
    elif label in ("shout", "speech"):
        voices = sum(1 for voice in material.voices if material.tts[voice.source_id][label])
        weight = 0.5 if label == "shout" else 0.4
        producers = [(weight, recorded_sources, material.recorded(label)), (1 - weight, voices, material.spoken(label))]
    elif label in synthetic_events:
        producers = [
            (0.5, recorded_sources, material.recorded(label)),
            (0.5, 1, material.synthetic(label, synthetic_events[label])),
        ]
    available = [
        (sources if material.balanced_by_source else weight, producer)
        for weight, sources, producer in producers
        if producer is not None
    ]
    if not available:
        raise DatasetError(f"no source of {label!r} in the {material.split} split; add sound packages or voices")
    return available


def _make_clip(rng: Rng, material: _SplitMaterial, label: str) -> tuple[Audio, str, str]:
    """One augmented, labelled 1 s clip: (audio, source id of its labelled content, origin description)."""
    if label == "background":
        clip, source_id, origin = material.background_bed(rng)
        origin = f"{source_id}/{origin}"
        if rng.random() < 0.3:
            clip = synth.mix_at_snr(clip, material.background_bed(rng)[0], float(rng.uniform(0, 15)))
        if rng.random() < 0.25:
            clip = synth.mix_at_snr(
                _active_window(rng, synth.small_impact(rng), CLIP_SAMPLES), clip, float(rng.uniform(-5, 15))
            )
            origin += " | small impact"
        level_db = float(rng.uniform(-70, -15))
    else:
        producers = _foreground_producers(material, label)
        weights = np.array([w for w, _ in producers])
        _, produce = producers[int(rng.choice(len(producers), p=weights / weights.sum()))]
        source, source_id, detail = produce(rng)
        origin = f"{source_id}/{detail}"
        if rng.random() < 0.7:
            source = synth.resample_shift(source, float(rng.uniform(0.88, 1.14)))
        clip = _active_window(rng, synth.normalise_peak(source), CLIP_SAMPLES)
        if rng.random() < 0.5:
            clip = synth.reverberate(clip, synth.synthetic_rir(rng, float(rng.uniform(0.15, 1.0))))
        if rng.random() < 0.85:
            bed, bed_source, bed_detail = material.background_bed(rng)
            clip = synth.mix_at_snr(clip, bed, float(rng.uniform(0, 30)))
            origin += f" | {bed_source}/{bed_detail}"
        level_db = float(rng.uniform(-45, -10))
    if rng.random() < 0.3:
        clip = synth.band_limit(rng, clip)
    clip = clip * (10 ** (level_db / 20) / max(1e-9, synth.rms(clip)))
    if np.max(np.abs(clip)) > 1.0:
        clip = synth.soft_clip(clip / np.max(np.abs(clip)), 1.5) * 0.99
    return np.asarray(clip, dtype=np.float32), source_id, origin


# ------------------------------------------------------------------------------------------------- building


def _synthesise_voice_pool(voice: Voice, config: DatasetConfig, cache_dir: Path) -> dict[str, list[Audio]]:
    """Speech and to-be-shouted utterances of one voice, cached as WAV so rebuilding is fast."""
    directory = cache_dir / "tts" / voice.engine / voice.name.replace("+", "_")
    rng = np.random.default_rng([config.seed, int(hashlib.sha256(voice.source_id.encode()).hexdigest()[:8], 16)])
    plan: dict[str, list[tuple[str, int, int]]] = {
        "speech": [
            (str(rng.choice(EVERYDAY_SENTENCES)), int(rng.integers(30, 70)), int(rng.integers(130, 190)))
            for _ in range(config.sentences_per_voice)
        ],
        "shout": [
            (str(rng.choice(SHOUTED_PHRASES)), int(rng.integers(60, 99)), int(rng.integers(120, 175)))
            for _ in range(config.shouts_per_voice)
        ],
    }
    pool: dict[str, list[Audio]] = {"speech": [], "shout": []}
    with tempfile.TemporaryDirectory(prefix="distress-tts-") as work:
        for kind, items in plan.items():
            for index, (text, pitch, rate) in enumerate(items):
                key = hashlib.sha256(f"{text}|{pitch}|{rate}".encode()).hexdigest()[:10]
                path = directory / f"{kind}-{index}-{key}.wav"
                if not path.exists():
                    audio = synth.normalise_peak(_trim_silence(speak(voice, text, pitch, rate, Path(work))))
                    path.parent.mkdir(parents=True, exist_ok=True)
                    soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
                # Always use the 16-bit cached copy, so a fresh build and a cached rebuild are identical.
                audio, _ = soundfile.read(path, dtype="float32")
                pool[kind].append(np.asarray(audio, dtype=np.float32))
    return pool


def _source_families(
    recordings: list[Recording], voices: list[Voice], speakers: dict[str, list[str]]
) -> tuple[list[str], list[str]]:
    ids: list[str] = []
    families: list[str] = []
    # A recorded speaker may have several labels (pain cries and shouted calls); its family is the most
    # distress-relevant one so rare labels are spread over the splits first.
    priority = ("scream", "crying", "glass", "gunshot", "alarm", "impact", "shout", "speech", "background")
    labels_of: dict[str, set[str]] = defaultdict(set)
    for rec in recordings:
        labels_of[rec.source_id].add(rec.label)
    for source_id, labels in labels_of.items():
        ids.append(source_id)
        families.append("recorded-" + min(labels, key=priority.index))
    for voice in voices:
        ids.append(voice.source_id)
        families.append(f"tts-{voice.engine}")
    for label, names in speakers.items():
        ids.extend(names)
        families.extend(f"synth-{name.split('/')[1].rsplit('-', 1)[0]}-{label}" for name in names)
    return ids, families


def _all_split_material(
    config: DatasetConfig, data_dir: Path, progress: Callable[[str, int, int], None] | None
) -> tuple[dict[Split, _SplitMaterial], dict[str, Split]]:
    recordings = [
        recording if recording.label in config.labels else replace(recording, label=LABEL_FALLBACK[recording.label])
        for recording in find_recordings(config.sound_packages)
    ]
    voices = available_voices(config.seed, config.espeak_voices)
    speakers = _synthetic_speakers(config.synthetic_speakers)
    ids, families = _source_families(recordings, voices, speakers)
    assignment = assign_splits(ids, families, config)
    tts: dict[str, dict[str, list[Audio]]] = {}
    for done, voice in enumerate(voices):
        if progress:
            progress("voices", done, len(voices))
        tts[voice.source_id] = _synthesise_voice_pool(voice, config, data_dir)
    materials = {
        split: _SplitMaterial(
            split,
            [r for r in recordings if assignment[r.source_id] == split],
            [v for v in voices if assignment[v.source_id] == split],
            {label: [n for n in names if assignment[n] == split] for label, names in speakers.items()},
            tts,
            config.train_animal_share if split == "train" else 0.0,
            config.labels,
            config.balanced_by_source,
        )
        for split in SPLITS
    }
    return materials, assignment


def build_dataset(
    config: DatasetConfig,
    data_dir: Path = DEFAULT_DATA_DIR,
    progress: Callable[[str, int, int], None] | None = None,
) -> Dataset:
    """Build (or load from cache) the three splits of labelled clips for ``config``.

    ``progress(stage, done, total)`` is called as clips are made, for a progress bar.
    """
    directory = data_dir / f"clips-{config.digest()}"
    if (directory / "manifest.json").exists():  # the same clips; the config may differ in what the digest leaves out
        return replace(load_dataset(directory), config=config)
    materials, assignment = _all_split_material(config, data_dir, progress)
    sets = {split: _make_split(config, materials[split], progress) for split in SPLITS}
    directory.mkdir(parents=True, exist_ok=True)
    for split, clips in sets.items():
        np.savez(
            directory / f"{split}.npz",
            audio=clips.audio,
            labels=clips.labels,
            source_ids=np.array(clips.source_ids),
            origins=np.array(clips.origins),
        )
    manifest = {
        "config": config.recorded(),
        "digest": config.digest(),
        "labels": list(config.labels),
        "sources": {source: assignment[source] for source in sorted(assignment)},
        "counts": {split: len(clips) for split, clips in sets.items()},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return Dataset(sets["train"], sets["validation"], sets["test"], directory, config)


def benign_stream(
    config: DatasetConfig,
    seconds: float,
    split: Split = "test",
    data_dir: Path = DEFAULT_DATA_DIR,
    seed: int = 0,
) -> Audio:
    """A continuous stream of everyday, non-distress audio made only from ``split``'s sources.

    Conversation (TTS speech with pauses), babble, music, recorded ambience and animals, room tone and small
    knocks follow each other in 2-20 s scenes at -50 to -15 dBFS, over a quiet room-tone floor. It measures
    how often the detector would raise a false alarm in an ordinary hour. With ``config.spaced_one_shots`` a
    recording shorter than its scene recurs after pauses, and the scene's level is that of the recording.
    """
    if seconds <= 0:
        raise DatasetError(f"benign stream length must be positive, got {seconds}")
    material = _all_split_material(config, data_dir, None)[0][split]
    rng = np.random.default_rng([config.seed, seed, SPLITS.index(split), 99])
    total = int(seconds * SAMPLE_RATE)
    out = np.zeros(total, dtype=np.float32)
    speech = material.spoken("speech")
    background = material.recorded_background
    position = 0
    while position < total:
        length = min(total - position, int(rng.uniform(2, 20) * SAMPLE_RATE))
        scene = rng.random()
        reference: Audio | None = None  # what the scene's level is measured on: the scene, or its one sound
        if scene < 0.35 and speech is not None:  # one or two people talking, with pauses
            segment = np.zeros(length, dtype=np.float32)
            cursor = int(rng.uniform(0, 0.5) * SAMPLE_RATE)
            while cursor < length:
                utterance = speech(rng)[0][: length - cursor]
                segment[cursor : cursor + len(utterance)] += utterance
                cursor += len(utterance) + int(rng.uniform(0.2, 1.5) * SAMPLE_RATE)
        elif scene < 0.5:
            segment = np.concatenate([material.babble(rng) for _ in range(length // CLIP_SAMPLES + 1)])[:length]
        elif scene < 0.65:
            segment = synth.music_like(rng, length)
        elif scene < 0.85 and background is not None:
            recording = background(rng)[0]
            if config.spaced_one_shots and 0 < len(recording) < length:
                segment, reference = _recurring(recording, length, rng), recording
            else:
                segment = np.resize(recording, length) if len(recording) else np.zeros(length, np.float32)
        else:
            segment = synth.room_tone(rng, length)
            for _ in range(int(rng.integers(0, 4))):
                knock = synth.small_impact(rng)[:length]
                start = int(rng.integers(0, length - len(knock) + 1))
                segment[start : start + len(knock)] += knock
        level = synth.rms(segment if reference is None else reference)
        segment = segment * (10 ** (rng.uniform(-50, -15) / 20) / max(1e-9, level))
        if rng.random() < 0.4:
            segment = synth.reverberate(segment, synth.synthetic_rir(rng, float(rng.uniform(0.2, 0.8))))
        out[position : position + length] = segment
        position += length
    floor = synth.room_tone(rng, total)
    return np.clip(out + floor * (10 ** (-60 / 20) / max(1e-9, synth.rms(floor))), -1.0, 1.0).astype(np.float32)


def _recurring(recording: Audio, length: int, rng: Rng) -> Audio:
    """``length`` samples in which ``recording`` recurs after pauses of 0.3-3 s, as steps or doors do."""
    segment = np.zeros(length, dtype=np.float32)
    cursor = int(rng.uniform(0, 1) * SAMPLE_RATE)
    while cursor < length:
        part = recording[: length - cursor]
        segment[cursor : cursor + len(part)] += part
        cursor += len(recording) + int(rng.uniform(0.3, 3.0) * SAMPLE_RATE)
    return segment


def join_event(clips: ClipSet, first: int, count: int, rng: Rng) -> Audio:
    """``count`` clips of ``first``'s label and source end to end: seconds of one screaming voice, not one clip."""
    members = np.flatnonzero(clips.labels == clips.labels[first])
    same_source = members[np.asarray(clips.source_ids)[members] == clips.source_ids[first]]
    parts = [first, *rng.choice(same_source, count - 1)]
    event: Audio = np.concatenate([clips.audio[i] for i in parts]).astype(np.float32) / np.float32(32767.0)
    return event


@dataclass(frozen=True)
class PlacedEvent:
    """A distress event in an :class:`EventStream`: its first sample, label index and audio on its own."""

    start: int
    label: int
    audio: Audio


@dataclass(frozen=True)
class EventStream:
    """Everyday audio with distress events at known moments, kept apart so a trainer can tell which frames of
    the mix hold an event's sound and which only the context."""

    context: Audio
    events: tuple[PlacedEvent, ...]

    def mixed(self) -> Audio:
        audio = self.context.copy()
        for event in self.events:
            audio[event.start : event.start + len(event.audio)] += event.audio
        return np.clip(audio, -1.0, 1.0)


def event_stream(
    config: DatasetConfig,
    clips: ClipSet,
    seconds: float,
    split: Split,
    data_dir: Path = DEFAULT_DATA_DIR,
    seed: int = 0,
) -> EventStream:
    """:func:`benign_stream` of ``split`` with distress events of ``clips`` (1-3 clips of one label and source)
    mixed in every 3-12 s at sample offsets that ignore clip and chunk boundaries, as they happen live."""
    context = benign_stream(config, seconds, split, data_dir, seed)
    rng = np.random.default_rng([config.seed, seed, SPLITS.index(split), 98])
    distress = np.flatnonzero(config.distress_targets(clips.labels))
    if not len(distress):
        raise DatasetError(f"the {split} clips hold no distress clip to place in a stream")
    events: list[PlacedEvent] = []
    cursor = int(rng.uniform(2, 10) * SAMPLE_RATE)
    while True:
        first = int(rng.choice(distress))
        audio = join_event(clips, first, int(rng.integers(1, 4)), rng)
        if cursor + len(audio) > len(context):
            break
        events.append(PlacedEvent(cursor, int(clips.labels[first]), audio))
        cursor += len(audio) + int(rng.uniform(3, 12) * SAMPLE_RATE)
    return EventStream(context, tuple(events))


def _make_split(
    config: DatasetConfig, material: _SplitMaterial, progress: Callable[[str, int, int], None] | None
) -> ClipSet:
    count = config.clips_per_label[material.split]
    total = count * len(config.labels)
    audio = np.zeros((total, CLIP_SAMPLES), dtype=np.int16)
    labels = np.zeros(total, dtype=np.int64)
    sources: list[str] = []
    origins: list[str] = []
    split_index = SPLITS.index(material.split)
    for label_index, label in enumerate(config.labels):
        for i in range(count):
            row = label_index * count + i
            if progress and row % 50 == 0:
                progress(material.split, row, total)
            rng = np.random.default_rng([config.seed, split_index, label_index, i])
            clip, source_id, origin = _make_clip(rng, material, label)
            audio[row] = np.round(np.clip(clip, -1.0, 1.0) * 32767).astype(np.int16)
            labels[row] = label_index
            sources.append(source_id)
            origins.append(origin)
    return ClipSet(audio, labels, tuple(sources), tuple(origins))


def load_dataset(directory: Path) -> Dataset:
    """Load a dataset previously written by :func:`build_dataset`."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        raise DatasetError(f"{directory} holds no dataset (no manifest.json); build it first")
    manifest = json.loads(manifest_path.read_text())
    config = DatasetConfig.from_dict(manifest["config"])
    if manifest["labels"] != list(config.labels):
        raise DatasetError(f"{directory}: its manifest names labels {manifest['labels']}, its config {config.labels}")
    sets = {}
    for split in SPLITS:
        with np.load(directory / f"{split}.npz") as data:
            sets[split] = ClipSet(
                data["audio"],
                data["labels"],
                tuple(str(s) for s in data["source_ids"]),
                tuple(str(s) for s in data["origins"]),
            )
    return Dataset(sets["train"], sets["validation"], sets["test"], directory, config)
