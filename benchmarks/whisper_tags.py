"""Whisper's own ear: the non-speech tags tiny.en writes ("(screaming)", "(laughs)") when its non-speech tokens
are not suppressed, as a zero-shot distress signal beside the distress-yamnet head, on dataset 4's clips.

Each clip (1 s) is decoded alone as the ASR stage decodes a segment (silence pad, greedy), with the non-speech
tokens allowed and no VAD. A clip is *tagged* when a tag names a distress sound (``DISTRESS_TAG_STEMS``, fixed
before any measurement). The head is read at the point that flags 5 % of the split's benign clips, as
``distress models evaluate-head`` reads it. The question is whether the tags find distress the head misses for
fewer false positives than lowering the head's own point would cost: "head or tag" is compared with the head
alone at the same share of benign clips flagged. Choose on validation; the test split only reports.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt

from domain.labels import DISTRESS_LABELS
from models.asr import AsrOptions, Transcriber, resolve_model
from models.training.dataset import DEFAULT_DATA_DIR, Split, build_dataset, dataset_4
from models.training.metrics import threshold_at_fpr
from models.yamnet import Yamnet, patches
from models.yamnet_head import HeadCheckpoint, YamnetDistressModel, default_head_path

OPERATING_FPR = 0.05
# Stems of the tags that name distress: vocal distress, gunfire and explosions, breaking glass and crashes,
# alarms. Laughter, music, applause, coughs and sighs are everyday tags.
DISTRESS_TAG_STEMS = (
    "scream",
    "shriek",
    "yell",
    "shout",
    "cry",
    "cries",
    "sob",
    "wail",
    "whimper",
    "groan",
    "grunt",
    "moan",
    "gasp",
    "gun",
    "shot",
    "explo",
    "bang",
    "blast",
    "glass",
    "shatter",
    "smash",
    "crash",
    "break",
    "alarm",
    "siren",
)
_TAG = re.compile(r"[(\[*]([^)\]*]+)[)\]*]")


def tags(text: str) -> list[str]:
    """The non-speech tags in a transcript, lower case: "(screaming)", "[MUSIC]", "*gasps*"."""
    return [tag.strip().lower() for tag in _TAG.findall(text)]


def names_distress(tag: str) -> bool:
    return any(stem in tag for stem in DISTRESS_TAG_STEMS)


def _flagged(flags: npt.NDArray[np.bool_], labels: list[str]) -> dict[str, float]:
    """Share of each label's clips flagged, and of distress and benign clips together."""
    shares = {label: float(flags[[i for i, name in enumerate(labels) if name == label]].mean()) for label in labels}
    distress = np.array([label in DISTRESS_LABELS for label in labels])
    return {
        "distress_recall": float(flags[distress].mean()),
        "benign_flagged": float(flags[~distress].mean()),
        **{f"label_{label}": shares[label] for label in sorted(shares)},
    }


def run(split: Split = "validation", clips_per_label: int = 40) -> dict[str, Any]:
    """Tags, head and both on ``clips_per_label`` clips of each label of ``split`` (drawn with seed 0)."""
    head = YamnetDistressModel(Yamnet.load(), HeadCheckpoint.load(default_head_path()))
    dataset = build_dataset(dataset_4(), DEFAULT_DATA_DIR)
    clips = dataset.split(split)
    rng = np.random.default_rng(0)
    chosen = [
        int(index)
        for label in range(len(dataset.config.labels))
        for index in rng.choice(np.flatnonzero(clips.labels == label), clips_per_label, replace=False)
    ]
    transcriber = Transcriber(resolve_model(None), AsrOptions(non_speech_tags=True, cpu_threads=1))
    labels = [dataset.config.labels[int(clips.labels[index])] for index in chosen]
    head_scores: list[float] = []
    tagged: list[bool] = []
    heard: dict[str, Counter[str]] = {}
    for done, index in enumerate(chosen):
        audio = clips.waveform(index)
        head_scores.append(head.predict_batch(patches(audio)[:1])[0].distress_probability)
        found = tags(transcriber.transcribe(audio).text)
        tagged.append(any(names_distress(tag) for tag in found))
        heard.setdefault(labels[done], Counter()).update(found)
    scores = np.array(head_scores)
    distress = np.array([label in DISTRESS_LABELS for label in labels])
    point = threshold_at_fpr(scores, distress.astype(np.float32), OPERATING_FPR)
    by_head, by_tag = scores >= point, np.array(tagged)
    either = by_head | by_tag
    # The head's lowest point that flags no more benign clips than "head or tag" does.
    benign = np.sort(scores[~distress])[::-1]
    flagged = int(either[~distress].sum())
    matched = float(np.nextafter(benign[flagged], 1.0)) if flagged < len(benign) else float(benign[-1])
    return {
        "split": split,
        "clips": len(chosen),
        "head": f"{head.model_id} {head.model_version}",
        "whisper": transcriber.model.model_id,
        "head_point": point,
        "head_matched_point": matched,
        "rows": {
            "head at 5 % of benign clips": _flagged(by_head, labels),
            "whisper tags": _flagged(by_tag, labels),
            "head or tag": _flagged(either, labels),
            "head alone, as many benign flagged": _flagged(scores >= matched, labels),
        },
        "tags_by_label": {label: dict(counter.most_common(6)) for label, counter in sorted(heard.items())},
    }


def render(result: dict[str, Any]) -> str:
    rows: dict[str, dict[str, float]] = result["rows"]
    label_keys = [key for key in next(iter(rows.values())) if key.startswith("label_")]
    lines = [
        f"{result['clips']} {result['split']} clips; {result['head']}, Whisper {result['whisper']} tags",
        f"{'scorer':<36} {'recall':>7} {'benign':>7} " + " ".join(f"{k[6:]:>10}" for k in label_keys),
    ]
    for name, row in rows.items():
        shares = " ".join(f"{row[key]:>10.2f}" for key in label_keys)
        lines.append(f"{name:<36} {row['distress_recall']:>7.3f} {row['benign_flagged']:>7.3f} {shares}")
    for label, heard in result["tags_by_label"].items():
        lines.append(f"{label}: " + ", ".join(f"{tag} {count}" for tag, count in heard.items()))
    return "\n".join(lines)
