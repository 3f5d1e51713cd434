"""What YAMNet costs per patch on one CPU thread, float graph and as shipped, against our CNN in the same run.

Every contender scores the same 0.96 s patches of real speech (espeak-ng, as ``benchmarks.features`` makes it),
one patch per call as a live stream does (every 0.48 s), and also all at once (offline scoring). Each takes its
own log-mel: YAMNet's front end (``models.yamnet.FRONT_END``) or the CNN's (``models.features`` defaults), timed
per 48-frame hop. Times are CPU seconds of this process with every thread pool limited to one thread, best of
``REPEATS`` rounds with the contenders interleaved, after a warm-up: on a shared machine the ratios are the
numbers to trust. ``streams_per_core`` is how many streams one core could score at one patch per 0.48 s hop,
front end included. The float and shipped graphs' agreement on the same patches is reported too, since the
choice between them (docs/yamnet.md) weighs cost against it.

Run with ``distress bench yamnet [--json]`` or ``python -m benchmarks.yamnet [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.features import limit_threads, speech_signal
from config.settings import load_settings
from models import yamnet
from models.classifier import DISTRESS_LABELS, DistressClassifier
from models.features import FeatureConfig, log_mel
from models.fused import FusedDistressModel, default_fused_path
from models.training.dataset import SPLITS, Split, _source_families, assign_splits
from models.training.evaluate import trained_dataset_config
from models.training.game_sounds import Recording, find_recordings, read_recording
from models.yamnet_head import HeadCheckpoint, YamnetDistressModel, default_head_path

SECONDS = 60.0
REPEATS = 5
WARMUP_PATCHES = 10
ZERO_SHOT_THRESHOLD = 0.5
HOP_SECONDS = yamnet.PATCH_HOP_FRAMES * yamnet.FRONT_END.hop_length / yamnet.FRONT_END.sample_rate

Patches = npt.NDArray[np.float32]
Scorer = Callable[[Patches], object]


def _cpu_seconds(action: Callable[[], object]) -> float:
    start = time.process_time()
    action()
    return time.process_time() - start


def _one_at_a_time(score: Scorer, patches: Patches) -> Callable[[], None]:
    def action() -> None:
        for index in range(len(patches)):
            score(patches[index : index + 1])

    return action


def _best(actions: dict[str, Callable[[], object]]) -> dict[str, float]:
    """The fastest of ``REPEATS`` CPU times per action, the actions interleaved within each round."""
    best = dict.fromkeys(actions, float("inf"))
    for _ in range(REPEATS):
        for name, action in actions.items():
            best[name] = min(best[name], _cpu_seconds(action))
    return best


def _agreement(float_model: yamnet.Yamnet, shipped: yamnet.Yamnet, patches: Patches) -> dict[str, float]:
    """How often the shipped graph keeps the float graph's top class (first, or within its top 3), and the
    cosine similarity of their embeddings."""
    float_scores, float_embeddings = float_model.run(patches)
    shipped_scores, shipped_embeddings = shipped.run(patches)
    float_top = float_scores.argmax(axis=1)
    shipped_top3 = np.argsort(-shipped_scores, axis=1)[:, :3]
    cosine = (float_embeddings * shipped_embeddings).sum(axis=1) / (
        np.linalg.norm(float_embeddings, axis=1) * np.linalg.norm(shipped_embeddings, axis=1) + 1e-12
    )
    return {
        "top1_agreement": float((float_top == shipped_scores.argmax(axis=1)).mean()),
        "top1_in_shipped_top3": float((shipped_top3 == float_top[:, None]).any(axis=1).mean()),
        "max_probability_difference_mean": float(np.abs(float_scores - shipped_scores).max(axis=1).mean()),
        "embedding_cosine_mean": float(cosine.mean()),
    }


def run(seconds: float = SECONDS) -> dict[str, Any]:
    """Time the contenders on ``seconds`` of speech; return every number."""
    if seconds < 1.0:
        raise ValueError(f"seconds must be at least 1, got {seconds}")
    limit_threads(1)
    folder = load_settings().yamnet_path
    models = {variant: yamnet.Yamnet.load(folder, variant) for variant in ("float", "quantized")}
    cnn = DistressClassifier.load()
    head = YamnetDistressModel(models["float"], HeadCheckpoint.load(default_head_path()))
    fused = FusedDistressModel.load(default_fused_path(), yamnet_path=folder)
    signal = speech_signal(seconds, yamnet.FRONT_END.sample_rate)
    patches = {"yamnet": yamnet.patches(signal), "cnn": yamnet.patches(signal, FeatureConfig())}
    patches["fused"] = np.concatenate([patches["yamnet"], patches["cnn"]], axis=2)
    n_patches = len(patches["yamnet"])
    scorers: dict[str, tuple[Scorer, Patches]] = {
        "float": (models["float"].run, patches["yamnet"]),
        "quantized": (models["quantized"].run, patches["yamnet"]),
        "cnn": (cnn.cnn_scores, patches["cnn"]),
        "head": (head.predict_batch, patches["yamnet"]),  # the shipped distress-yamnet: YAMNet float + its head
        "fused": (fused.predict_batch, patches["fused"]),  # distress-fused: the head and the whole CNN
    }
    for score, inputs in scorers.values():  # warm-up: graph optimisation, allocations, lazy imports
        _one_at_a_time(score, inputs[:WARMUP_PATCHES])()
    streaming = _best({name: _one_at_a_time(score, inputs) for name, (score, inputs) in scorers.items()})
    batched = _best({name: partial(score, inputs) for name, (score, inputs) in scorers.items()})
    front_ends = {"yamnet": yamnet.FRONT_END, "cnn": FeatureConfig()}
    front_end = _best({name: partial(log_mel, signal, config) for name, config in front_ends.items()})
    hops = signal.size / (yamnet.PATCH_HOP_FRAMES * yamnet.FRONT_END.hop_length)
    front_end_ms = {name: 1000.0 * cpu / hops for name, cpu in front_end.items()}
    per_patch_ms = {name: 1000.0 * cpu / n_patches for name, cpu in streaming.items()}
    front_end_ms["fused"] = front_end_ms["yamnet"] + front_end_ms["cnn"]  # both log-mels
    per_stream_ms = {name: per_patch_ms[name] + front_end_ms.get(name, front_end_ms["yamnet"]) for name in per_patch_ms}
    return {
        "float_ms_per_patch": per_patch_ms["float"],
        "quantized_ms_per_patch": per_patch_ms["quantized"],
        "cnn_ms_per_patch": per_patch_ms["cnn"],
        "head_ms_per_patch": per_patch_ms["head"],
        "fused_ms_per_patch": per_patch_ms["fused"],
        "fused_vs_cnn": streaming["fused"] / streaming["cnn"],
        "head_vs_float": streaming["head"] / streaming["float"],
        "float_vs_cnn": streaming["float"] / streaming["cnn"],
        "quantized_vs_cnn": streaming["quantized"] / streaming["cnn"],
        "float_vs_quantized": streaming["float"] / streaming["quantized"],
        "yamnet_front_end_ms_per_hop": front_end_ms["yamnet"],
        "cnn_front_end_ms_per_hop": front_end_ms["cnn"],
        **{f"streams_per_core_{name}": 1000.0 * HOP_SECONDS / ms for name, ms in per_stream_ms.items()},
        **_agreement(models["float"], models["quantized"], patches["yamnet"]),
        "batched_ms_per_patch": {name: 1000.0 * cpu / n_patches for name, cpu in batched.items()},
        "patches": n_patches,
        "hop_seconds": HOP_SECONDS,
        "input": f"{seconds:g} s of espeak-ng speech (benchmarks.features.speech_signal)",
        "timing": f"CPU seconds of this process (time.process_time), one thread, best of {REPEATS}",
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus_visible": os.cpu_count()},
    }


def _recordings_by_split(classifier: DistressClassifier) -> dict[Split, list[Recording]]:
    """The recorded sound files of the dataset ``classifier`` was trained for, by split: its test split holds
    sources (a speaker, a weapon, a game's ambience) it never heard. A recorded source's split depends on its
    family alone, so assigning the recordings without the TTS voices gives the dataset's own split."""
    config = trained_dataset_config(classifier)
    recordings = find_recordings(config.sound_packages)
    assignment = assign_splits(*_source_families(recordings, [], {}), config)
    return {split: [r for r in recordings if assignment[r.source_id] == split] for split in SPLITS}


def _source_recall(sources: list[str], scores: list[npt.NDArray[np.float64]], threshold: float) -> float:
    """Recall with each source counting once (its share of recordings with a patch at ``threshold``), as
    ``distress models evaluate`` counts it."""
    by_source: dict[str, list[bool]] = {}
    for source, clip in zip(sources, scores, strict=True):
        by_source.setdefault(source, []).append(bool((clip >= threshold).any()))
    return float(np.mean([np.mean(found) for found in by_source.values()]))


def _table(
    recordings: list[Recording], scores: dict[str, list[npt.NDArray[np.float64]]], thresholds: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """Per recording label: recall by source and the share of patches flagged, for each scorer."""
    groups: dict[str, dict[str, Any]] = {}
    for label in sorted({recording.label for recording in recordings}):
        members = [index for index, recording in enumerate(recordings) if recording.label == label]
        sources = [recordings[index].source_id for index in members]
        groups[label] = {
            "distress": label in DISTRESS_LABELS,
            "recordings": len(members),
            "sources": len(set(sources)),
            "patches": sum(len(next(iter(scores.values()))[index]) for index in members),  # the same for every scorer
        }
        for name, values in scores.items():
            chosen = [values[index] for index in members]
            groups[label][f"{name}_recall_by_source"] = _source_recall(sources, chosen, thresholds[name])
            groups[label][f"{name}_patches_flagged"] = float((np.concatenate(chosen) >= thresholds[name]).mean())
    return groups


def zero_shot(threshold: float = ZERO_SHOT_THRESHOLD) -> dict[str, Any]:
    """YAMNet's zero-shot labels (``models.yamnet.zero_shot_distress``, float graph) on the recorded sounds of
    the shipped classifier's dataset, and the classifier at its own operating points on the same patches of its
    test split (sources it never trained on; YAMNet has heard none of them).

    A patch is distress for YAMNet when any of its seven labels reaches the threshold (the classifier's impact
    recordings include gunfire and explosions, YAMNet's gunshot label); a recording is found when one of its
    patches is. YAMNet is read at ``threshold`` and at the threshold that flags as many benign test patches as
    the classifier does."""
    model = yamnet.Yamnet.load(load_settings().yamnet_path)
    classifier = DistressClassifier.load()
    splits = _recordings_by_split(classifier)
    yamnet_scores: dict[Split, list[npt.NDArray[np.float64]]] = {split: [] for split in SPLITS}
    cnn_flags: list[npt.NDArray[np.float64]] = []
    for split, recordings in splits.items():
        for recording in recordings:
            audio = read_recording(recording)
            labels = yamnet.zero_shot_distress(model.scores(yamnet.patches(audio)))
            yamnet_scores[split].append(np.max(list(labels.values()), axis=0).astype(np.float64))
            if split == "test":
                probabilities, distress = classifier.score_arrays(yamnet.patches(audio, FeatureConfig()))
                cnn_flags.append((distress >= classifier.thresholds(probabilities)).astype(np.float64))
    benign = [index for index, recording in enumerate(splits["test"]) if recording.label not in DISTRESS_LABELS]
    cnn_false_positives = float(np.concatenate([cnn_flags[index] for index in benign]).mean())
    benign_yamnet = np.concatenate([yamnet_scores["test"][index] for index in benign])
    matched = float(np.quantile(benign_yamnet, 1.0 - cnn_false_positives, method="higher"))
    test = {"yamnet": yamnet_scores["test"], "yamnet_matched": yamnet_scores["test"], "cnn": cnn_flags}
    every = [recording for split in SPLITS for recording in splits[split]]
    every_scores = [scores for split in SPLITS for scores in yamnet_scores[split]]
    return {
        "threshold": threshold,
        "matched_threshold": matched,
        "cnn_benign_patches_flagged": cnn_false_positives,
        "classifier": f"{classifier.model_id} {classifier.model_version} at its own per-label operating points",
        "packages": list(trained_dataset_config(classifier).sound_packages),
        "test_split": _table(splits["test"], test, {"yamnet": threshold, "yamnet_matched": matched, "cnn": 1.0}),
        "all_splits": _table(every, {"yamnet": every_scores}, {"yamnet": threshold}),
    }


def render_zero_shot(result: dict[str, Any]) -> str:
    """One row per recording label: recall by source (distress labels) or share of patches flagged (benign)."""
    lines = [
        f"recorded sounds of {', '.join(result['packages'])}; {result['classifier']}",
        f"YAMNet at {result['threshold']:g}, and matched at {result['matched_threshold']:.3f}, which flags the "
        f"classifier's {result['cnn_benign_patches_flagged']:.2%} of benign test patches",
    ]
    for table, names in (("test_split", ("yamnet", "yamnet_matched", "cnn")), ("all_splits", ("yamnet",))):
        lines.append(
            f"{table}: {'label':<11} {'recs':>5} {'srcs':>5} {'patches':>7}  " + " ".join(f"{n:>15}" for n in names)
        )
        for label, group in result[table].items():
            kind = "recall_by_source" if group["distress"] else "patches_flagged"
            values = " ".join(f"{group[f'{name}_{kind}']:>15.3f}" for name in names)
            lines.append(
                f"{'':<{len(table) + 2}}{label:<11} {group['recordings']:>5} {group['sources']:>5} "
                f"{group['patches']:>7}  {values}"
            )
    lines.append("distress labels: recall by source; benign labels: share of patches flagged")
    return "\n".join(lines)


def render(result: dict[str, Any]) -> str:
    """The headline numbers as plain text, for people."""
    lines = [f"{result['patches']} patches of speech, one thread, best of {REPEATS}"]
    lines.append(f"{'contender':<10} {'ms/patch':>9} {'batched':>9} {'streams/core':>13}")
    for name in ("float", "quantized", "cnn", "head", "fused"):
        lines.append(
            f"{name:<10} {result[f'{name}_ms_per_patch']:>9.3f} {result['batched_ms_per_patch'][name]:>9.3f} "
            f"{result[f'streams_per_core_{name}']:>13.0f}"
        )
    lines.append(
        f"float {result['float_vs_cnn']:.2f}x the CNN's time, shipped {result['quantized_vs_cnn']:.2f}x; "
        f"front end {result['yamnet_front_end_ms_per_hop']:.3f} ms per hop "
        f"(CNN's {result['cnn_front_end_ms_per_hop']:.3f}); "
        f"distress-yamnet (float YAMNet + its head) {result['head_vs_float']:.2f}x float YAMNet alone; "
        f"distress-fused {result['fused_vs_cnn']:.2f}x the CNN's time"
    )
    lines.append(
        f"float vs shipped: top-1 agree {result['top1_agreement']:.1%}, float top-1 in shipped top-3 "
        f"{result['top1_in_shipped_top3']:.1%}, embedding cosine {result['embedding_cosine_mean']:.3f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="length of the speech input")
    parser.add_argument("--zero-shot", action="store_true", help="measure zero-shot detection instead of cost")
    arguments = parser.parse_args(argv)
    if arguments.zero_shot:
        result = zero_shot()
        print(json.dumps(result, indent=2) if arguments.json else render_zero_shot(result))
        return
    result = run(arguments.seconds)
    print(json.dumps(result, indent=2) if arguments.json else render(result))


if __name__ == "__main__":
    main()
