"""The model card of an evaluated checkpoint: MODEL_CARD.md with its ROC and confusion plots (matplotlib)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from domain.audio import SAMPLE_RATE
from models.classifier import DISTRESS_LABELS, LABELS, PATCH_FRAMES, DistressClassifier, sha256_of
from models.features import FeatureConfig
from models.training.evaluate import EvaluationReport, format_sources, format_table, thresholds_text
from models.training.game_sounds import RULES
from models.training.train import MIN_HEARD_FRAMES


def _largest_sources_text(report: EvaluationReport) -> str:
    """ "shout: nexuiz-data:torus, 263 of 500; ...": each distress label's largest source and its share of clips."""
    support = {metrics.label: metrics.support for metrics in report.classes}
    distress = [source for source in report.sources if source.label in DISTRESS_LABELS]
    largest = [  # sources are sorted by label and name, so a tie goes to the first name
        max((source for source in distress if source.label == label), key=lambda source: source.clips)
        for label in sorted({source.label for source in distress})
    ]
    return "; ".join(f"{s.label}: {s.source}, {s.clips} of {support[s.label]}" for s in largest)


def _plot_roc(report: EvaluationReport, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot(report.roc_fpr, report.roc_tpr, label=f"distress (AUC {report.distress_auc:.3f})")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.axvline(0.05, linestyle="--", color="tab:red", label="5% false positives")
    axis.set(
        xlabel="false-positive rate",
        ylabel="true-positive rate (recall)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=f"Distress ROC, {report.split} split",
    )
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_confusion(report: EvaluationReport, path: Path) -> None:
    normalised = report.confusion / np.maximum(1, report.confusion.sum(axis=1, keepdims=True))
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right")
    axis.set_yticks(range(len(LABELS)), LABELS)
    for (row, col), count in np.ndenumerate(report.confusion):
        axis.text(
            col,
            row,
            str(count),
            ha="center",
            va="center",
            color="white" if normalised[row, col] > 0.5 else "black",
            fontsize=8,
        )
    axis.set(xlabel="predicted", ylabel="actual", title=f"Confusion matrix, {report.split} split")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _augmentation_summary(train_config: dict[str, Any]) -> str:
    """The spectral augmentations a checkpoint was trained with, as a clause of the card's prose."""
    parts = []
    if train_config.get("level_db"):
        parts.append(f"random gain +-{train_config['level_db']:g} dB")
    if train_config.get("eq_db"):
        parts.append(f"a random smooth mel-band equaliser ({train_config['eq_db']:g} dB s.d.)")
    if train_config.get("overlay_probability"):
        low, high = train_config["overlay_snr_db"]
        parts.append(
            f"a training background clip added in the power domain {low:g}-{high:g} dB below the clip "
            f"(probability {train_config['overlay_probability']:g})"
        )
    if train_config.get("band_mixstyle_probability"):
        parts.append(
            f"Freq-MixStyle (probability {train_config['band_mixstyle_probability']:g}, "
            f"Beta({train_config['band_mixstyle_alpha']:g}))"
        )
    return "".join(f", {part}" for part in parts)


def _context_summary(train_config: dict[str, Any]) -> str:
    """How much live-cut training audio a checkpoint saw besides its clips, as a sentence of the card."""
    seconds, share = train_config.get("context_seconds", 0.0), train_config.get("context_share", 0.0)
    if not seconds or not share:
        return ""
    per_kind = round(train_config.get("batch_size", 0) * share / 2)
    heard_s = MIN_HEARD_FRAMES * FeatureConfig().hop_length / SAMPLE_RATE
    return (
        f" Each step of {train_config.get('batch_size')} clips also took {per_kind} windows holding at least "
        f"{heard_s:g} s of a distress event's sound and {per_kind} of everyday audio alone (distress 0, no class), "
        f"cut at any frame from {seconds / 3600:g} h of training-source everyday audio with training distress events "
        f"(1-3 clips) mixed in every 3-12 s, as the runtime cuts a live stream; the second stage's head saw "
        f"{train_config.get('head_context_patches', 0)} of each kind too."
    )


def _rule_table() -> str:
    lines = ["| package family | file path pattern | label |", "|---|---|---|"]
    lines += [
        f"| {rule.package} | `{rule.pattern.replace('|', '&#124;')}` | {rule.label or 'excluded'} |" for rule in RULES
    ]
    return "\n".join(lines)


def write_model_card(
    report: EvaluationReport,
    classifier: DistressClassifier,
    checkpoint: Path,
    directory: Path,
    second_stage_note_text: str,
) -> Path:
    """MODEL_CARD.md plus roc.png and confusion.png in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _plot_roc(report, directory / "roc.png")
    _plot_confusion(report, directory / "confusion.png")
    meta = classifier.metadata
    train_config = meta.get("train_config", {})
    dataset_config = train_config.get("dataset", {})
    cost = report.cost
    validation: dict[str, float] = meta.get("validation", {})
    card = CARD_TEMPLATE.format(
        model_id=classifier.model_id,
        version=classifier.model_version,
        checkpoint=checkpoint.name,
        sha256=sha256_of(checkpoint),
        size_kb=cost.checkpoint_bytes / 1024,
        parameters=cost.parameters,
        labels=", ".join(LABELS),
        distress=", ".join(sorted(DISTRESS_LABELS)),
        patch_frames=PATCH_FRAMES,
        temperature=classifier.calibration.temperature,
        platt_a=classifier.calibration.platt_scale,
        platt_b=classifier.calibration.platt_bias,
        threshold=thresholds_text(classifier.threshold, classifier.label_thresholds),
        threshold_fpr=train_config.get("threshold_fpr", "?"),
        best_epoch=meta.get("best_epoch", "?"),
        epochs=train_config.get("epochs", "?"),
        seed=train_config.get("seed", "?"),
        dataset_digest=meta.get("dataset_digest", "?"),
        augmentation=_augmentation_summary(train_config),
        context=_context_summary(train_config),
        dataset_seed=dataset_config.get("seed", "?"),
        clips=dataset_config.get("clips_per_label", {}),
        animal_share=(
            f" In the training split, {share:.0%} of the background beds are drawn from its animal calls first "
            "(validation and test keep the natural mix)."
            if (share := dataset_config.get("train_animal_share", 0.0))
            else ""
        ),
        table=format_table(report),
        point=report.point_at_5pct_fpr,
        largest_sources=_largest_sources_text(report),
        sources=format_sources(report),
        ms_single=cost.ms_per_patch,
        ms_batched=cost.ms_per_patch_batched,
        ms_stage=(f"{cost.second_stage_ms_per_patch:.2f}" if cost.second_stage_ms_per_patch is not None else "none:"),
        streams=cost.streams_per_core,
        second_stage=second_stage_note_text,
        rules=_rule_table(),
        python=platform.python_version(),
        torch=torch.__version__,
        threshold_at_fpr=validation.get("threshold_at_fpr", float("nan")),
        benign_max=validation.get("benign_stream_max", float("nan")),
        threshold_cap=(
            "so an ordinary stream raises no alarm."
            if classifier.threshold > validation.get("benign_stream_max", 1.0)
            else f"capped at {classifier.threshold:.2f}: a few benign windows still score above it, and the "
            "incident rules (N-of-M debounce) are what keep them from becoming alarms."
        ),
        val_accuracy=validation.get("accuracy", float("nan")),
        val_auc=validation.get("distress_auc", float("nan")),
        val_recall=validation.get("recall_at_threshold", float("nan")),
        val_fpr=validation.get("fpr_at_threshold", float("nan")),
    )
    path = directory / "MODEL_CARD.md"
    path.write_text(card)
    return path


CARD_TEMPLATE = """# Model card: {model_id} {version}

Acoustic distress classifier of the `distress` pipeline. Every `DistressScored` event it contributes to names
`model_id={model_id}` and `model_version={version}`.

| | |
|---|---|
| checkpoint | `{checkpoint}` ({size_kb:.0f} KiB) |
| sha256 | `{sha256}` |
| parameters | {parameters:,} |
| input | last {patch_frames} frames (0.97 s) of `models.features.log_mel` (64 mel bands, 125-7500 Hz) |
| classes | {labels} |
| distress classes | {distress} |
| cost, one patch, 1 thread | {ms_single:.2f} ms |
| cost, batched (32), 1 thread | {ms_batched:.2f} ms/patch |
| second stage, batched (32), 1 thread | {ms_stage} ms per patch it runs on |
| streams per core | ~{streams:.0f} at a patch per 0.5 s, second stage included at its benign share |

## Model

A small CNN (strided 3x3 convolutions with batch norm, mean+max pooling over time that keeps the frequency
axis) with two heads: class logits and one distress logit. The distress head is trained with binary
cross-entropy against "the clip's label is one of the distress classes"; its logit is Platt-scaled on the
validation split (a={platt_a:.3f}, b={platt_b:.3f}), with the two classes weighted to a 50/50 prior, so
`distress_probability` is calibrated for equally likely distress and non-distress (fusion should apply its own
prior). Class probabilities are a softmax with temperature {temperature:.3f}, also fitted on validation.
Where the CNN's distress probability reaches a gate, a second stage (Whisper's encoder with a small head, see
below) is blended in and the result calibrated again; the parameter count above includes its head but not the
Whisper encoder, which ships with the ASR model.

The shipped decision threshold is the higher of the lowest threshold with at most {threshold_fpr} false positives
on validation ({threshold_at_fpr:.3f}) and just above the highest window of a benign validation stream
({benign_max:.3f}), {threshold_cap}
Each distress label has its own, by the same rule over the benign windows whose most probable distress label it
is, and a window is judged at its top distress label's: {threshold}. The everyday audio that scores high is
mostly taken for one or two kinds of distress, so the others need not wait at its point.

Trained for {epochs} epochs (best epoch {best_epoch} chosen on validation), seed {seed}, AdamW + one-cycle,
label smoothing, random 96-of-98-frame crops, SpecAugment masks{augmentation}.{context}
Validation at the chosen epoch: accuracy {val_accuracy:.3f}, distress ROC-AUC {val_auc:.4f}, recall
{val_recall:.3f} and false-positive rate {val_fpr:.3f} at the threshold. `distress models train` (CPU, one
thread) reproduces this checkpoint bit for bit on the kind of CPU it was trained on (float sums round
differently on others); then run `distress models evaluate`. Costs were measured on the shared 2-core
development machine and vary with its load.

## Evaluation (test split: voices, speakers and recordings never seen in training or validation)

{table}

(* = distress class.) The benign stream is generated only from test-split sources: TTS conversation, babble,
music, recorded ambience and animals, room tone and small knocks, -50 to -15 dBFS. "Raw" scores it every 0.5 s
and counts runs of consecutive windows at or above the classifier threshold. "Product decision" runs the same
audio through the chain `distress detect --no-asr` and the live actors use (features, scorer with fusion and
hysteresis, incident rules with N-of-M debounce, all at the configured settings) and counts the incidents
opened: that is what would page an operator. "Distress events in everyday context" runs the same chain on
recordings of another stretch of test-split everyday audio with one distress event each (three clips of one
label and source, starting at a random sub-second offset after 8 s) and counts the events that opened an
incident at the event. The phrase spotter is left out (it needs the ASR model and an hour of transcription);
its own false-alarm rate is measured by the ASR benchmarks.

### Where the recall at 5 % false positives is lost

At the split's point of 5 % false positives (distress probability {point:.3f}): the distress sources missing the
most clips there, and the everyday sources taken for distress most often. A split draws each label's clips from
its sources in proportion to their material, so a few sources weigh heavily (each distress label's largest:
{largest_sources}); the row "each of the distress sources counting once" above is the recall without that
weighting. Every source's counts are in
`distress models evaluate --json` ("sources").

{sources}

![ROC](roc.png)

![Confusion matrix](confusion.png)

## Second stage: Whisper-AT

{second_stage}

## Data

Dataset `clips-{dataset_digest}` (dataset seed {dataset_seed}, clips per label and split {clips}), built by
`models.training.dataset` from package-registry material only; nothing is downloaded. Each 1 s, 16 kHz clip is one
labelled foreground over a background bed from the same split, with random synthetic room reverb (RT60
0.15-1 s), pitch/tempo change by resampling (x0.88-1.14), SNR 0-30 dB, channel band-limiting and gain
(-45 to -10 dBFS; backgrounds -70 to -15 dBFS).{animal_share}

* **TTS voices**: espeak-ng (60 accent x voice-variant combinations), flite (kal, kal16, awb, rms, slt),
  festival (kal_diphone, ked_diphone, cmu_us_slt_arctic_hts) speaking everyday sentences ("speech") and
  distress calls made shout-like (raised pitch and formants by resampling, pre-emphasis, overdrive) ("shout").
  MBROLA voices are not in Debian main and are not used.
* **Synthesised**: screams and crying (source-filter voices with formants, vibrato, jitter and roughness;
  infant cry units and adult sobs with in-breaths), gunshots, explosions, slams, breaking glass (crack plus a
  shower of inharmonic decaying shards), coloured noise, mains hum, music-like tones, room tone, small knocks.
  Babble is 3-7 overlapping TTS talkers.
* **Recorded game sounds** (Debian packages; labelled by file path, table below): openarena-data,
  openarena-088-data, nexuiz-data, warzone2100-data, megaglest-data, freedink-data, 0ad-data,
  supertuxkart-data. Credits and licences: see each package's `/usr/share/doc/<package>/copyright`: OpenArena
  (GPL-2+, OpenArena team), Nexuiz (GPL-2+, Alientrap), Warzone 2100 (GPL-2+, Warzone 2100 Project), MegaGlest
  (CC-BY-SA-3.0, MegaGlest team), FreeDink data (GPL-3+ / CC-BY-3.0, Dink Smallwood data by RTsoft and
  contributors), 0 A.D. (CC-BY-SA-3.0, Wildfire Games), SuperTuxKart data (CC-BY-SA-3.0/4.0, CC-BY-3.0, CC0,
  GPL-2+ and others per file, SuperTuxKart team and the freesound.org and Battle for Wesnoth authors credited
  there).
  Debian's other game/sound data packages are reserved for independent evaluation and are not used.

**Split by source.** Sources are TTS voices, recorded speakers/sound groups (e.g. one Nexuiz player model, one
MegaGlest unit voice, one Nexuiz announcer), and synthetic speakers. Within each family of sources a seeded
hash sends ~15% to test, ~15% to validation, the rest to train; backgrounds mixed into a clip come from the
clip's own split. Synthetic impacts, glass and noise beds come from one generator in every split (different
random draws), so their held-out scores are optimistic; crying and glass have no recorded examples at all.

### File labelling rules (first match wins)

{rules}

## Limitations

Trained without real recordings of crying or breaking glass, and with game voice acting for screams and
shouts; expect lower recall on real crying and on distant or muffled distress than the table shows. Loud
benign vocalisations (cheering, children playing, singing) and real door slams were not available as
negatives.

Built with Python {python}, torch {torch}.
"""
