"""Scores against targets: ROC-AUC, the threshold and recall at a false-positive rate, the ROC curve, and the
decisions a stream of window scores makes; training, evaluation and comparison all measure with these."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def roc_auc(scores: npt.NDArray[np.floating], targets: npt.NDArray[np.floating]) -> float:
    """Area under the ROC curve (probability a positive outranks a negative, ties counted half)."""
    positives = scores[targets > 0.5]
    negatives = scores[targets <= 0.5]
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("ROC-AUC needs both positive and negative examples")
    order = np.argsort(np.concatenate([positives, negatives]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    combined = np.concatenate([positives, negatives])
    for value in np.unique(combined):  # average ranks of ties
        tied = combined == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return float(
        (ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2) / (len(positives) * len(negatives))
    )


STREAM_HOP_FRAMES = 50  # the runtime scores a patch every 0.5 s


def count_decisions(
    probabilities: npt.NDArray[np.floating], threshold: float | npt.NDArray[np.floating]
) -> tuple[int, int]:
    """(windows at or over threshold, decisions), with one threshold for all windows or one per window:
    consecutive over-threshold windows are one decision."""
    over = probabilities >= threshold
    starts = over & ~np.r_[False, over[:-1]]
    return int(over.sum()), int(starts.sum())


def threshold_at_fpr(scores: npt.NDArray[np.floating], targets: npt.NDArray[np.floating], fpr: float) -> float:
    """The lowest threshold whose false-positive rate on negatives (score >= threshold) is at most ``fpr``."""
    negatives = np.sort(scores[targets <= 0.5])[::-1]
    if len(negatives) == 0:
        raise ValueError("a false-positive rate needs negative examples")
    allowed = math.floor(fpr * len(negatives))
    if allowed >= len(negatives):
        return float(negatives[-1])
    return float(np.nextafter(negatives[allowed], np.inf))


def recall_at_fpr(scores: npt.NDArray[np.floating], targets: npt.NDArray[np.floating], fpr: float) -> float:
    """Share of positives at or over :func:`threshold_at_fpr`: the recall a split allows at that rate."""
    return float(np.mean(scores[targets > 0.5] >= threshold_at_fpr(scores, targets, fpr)))


def roc_curve(
    scores: npt.NDArray[np.floating], targets: npt.NDArray[np.floating]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(false-positive rates, true-positive rates) over all thresholds, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, positive = scores[order], targets[order] > 0.5
    distinct = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    tps = np.cumsum(positive)[distinct]
    fps = (distinct + 1) - tps
    return (np.r_[0.0, fps / max(1, (~positive).sum())], np.r_[0.0, tps / max(1, positive.sum())])
