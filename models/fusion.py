"""Fusion: one explainable distress score per chunk from the acoustic model, the phrase spotter, loudness and pitch.

The rule is deliberately simple so an operator can follow it from the reason string:
  * the acoustic distress probability is first moved onto the fusion scale: the classifier's own operating point
    (the probability at which it was validated to fire; per label where the checkpoint has one, taken for the
    window's top distress label) maps to the fusion threshold, by a shift in logit space;
  * it is then damped for very quiet audio (a faint sound far away should not page anyone
    on its own) and nudged up for high-pitched voiced screams/cries;
  * spotted distress phrases are independent evidence, combined with the acoustic probability by noisy-OR;
  * with an ``Accumulation`` (a model that was validated with one), evidence adds up over consecutive windows
    instead: each window adds its log-odds above the operating point (capped), plus a bonus for being louder
    than the stream's own recent background, the sum leaks a share each window, and the acoustic score reaches
    the threshold once the sum holds ``needed``. Several fairly sure windows in a row can then say what one
    near-certain window says, and a loud onset over a quiet room counts for more than the same score in a din;
  * the decision uses a per-stream threshold with hysteresis (no flapping around the threshold), shifted by the
    stream's sensitivity and by operators' false-alarm feedback (bounded, decaying, rebuilt from events).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from domain.labels import DISTRESS_LABELS
from events.catalogue import LabelScore, PhraseHit

VOICED_DISTRESS_LABELS = frozenset({"scream", "crying"})


BACKGROUND_WINDOWS = 30  # a stream's background loudness: the median of its last this many windows


@dataclass(frozen=True, kw_only=True)
class Accumulation:
    """Evidence over consecutive windows (a leaky sum of log-odds, as in a CUSUM test), chosen on validation."""

    memory: float  # the share of the sum a window carries over to the next
    needed: float  # log-odds above the operating point the sum must hold to reach the threshold
    cap: float = 4.0  # the most one window adds or takes away: no single window decides alone
    jump_weight: float = 0.0  # added by a window above the point that is jump_full_db over the background
    jump_full_db: float = 10.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.memory < 1.0:
            raise ValueError(f"accumulation memory must be in [0, 1), got {self.memory}")
        if self.needed < 0.0 or self.cap <= 0.0 or self.jump_weight < 0.0 or self.jump_full_db <= 0.0:
            raise ValueError(f"accumulation needs needed, jump_weight >= 0 and cap, jump_full_db > 0: {self}")


@dataclass(frozen=True, kw_only=True)
class FusionConfig:
    threshold: float = 0.6
    # The classifier probability that alone should reach ``threshold``; None: the scales already agree.
    acoustic_operating_point: float | None = None
    # Per distress label, where the classifier has one; the window's top distress label picks it.
    label_operating_points: Mapping[str, float] = field(default_factory=dict)
    hysteresis: float = 0.15
    phrase_weight: float = 0.9
    quiet_floor_dbfs: float = -60.0  # at or below: acoustic evidence ignored
    full_weight_dbfs: float = -42.0  # at or above: acoustic evidence at full weight
    high_pitch_hz: float = 450.0
    high_pitch_boost: float = 1.1
    false_alarm_step: float = 0.05
    false_alarm_max_raise: float = 0.2
    false_alarm_memory: timedelta = timedelta(days=7)
    min_threshold: float = 0.2
    max_threshold: float = 0.95
    accumulation: Accumulation | None = None  # None: each window is judged on its own

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.acoustic_operating_point is not None and not 0.0 < self.acoustic_operating_point < 1.0:
            raise ValueError(f"acoustic_operating_point must be in (0, 1), got {self.acoustic_operating_point}")
        for label, point in self.label_operating_points.items():
            if label not in DISTRESS_LABELS or not 0.0 < point < 1.0:
                raise ValueError(f"label operating point {label}={point}: needs a distress label and a value in (0, 1)")
        if not 0.0 <= self.hysteresis < self.threshold:
            raise ValueError(f"hysteresis must be in [0, threshold), got {self.hysteresis}")
        if self.quiet_floor_dbfs >= self.full_weight_dbfs:
            raise ValueError("quiet_floor_dbfs must be below full_weight_dbfs")


@dataclass(frozen=True, kw_only=True)
class FusedScore:
    score: float
    acoustic_probability: float
    threshold: float
    is_distress: bool
    reason: str


@dataclass
class StreamFusion:
    """Fusion state of one stream: hysteresis latch and operator feedback."""

    config: FusionConfig
    sensitivity: float = 1.0
    false_alarms: list[datetime] = field(default_factory=list)
    active: bool = False
    evidence: float = 0.0  # the accumulated log-odds (with an Accumulation)
    evidence_windows: int = 0  # consecutive windows the evidence has been building over
    loudness: deque[float] = field(default_factory=lambda: deque(maxlen=BACKGROUND_WINDOWS))

    def record_false_alarm(self, when: datetime) -> None:
        self.false_alarms.append(when)

    def threshold(self, now: datetime) -> float:
        """The stream's effective threshold: base, minus sensitivity, plus recent false-alarm feedback (bounded)."""
        recent = sum(1 for moment in self.false_alarms if now - moment <= self.config.false_alarm_memory)
        raise_by = min(self.config.false_alarm_max_raise, recent * self.config.false_alarm_step)
        value = self.config.threshold - 0.2 * (self.sensitivity - 1.0) + raise_by
        return min(self.config.max_threshold, max(self.config.min_threshold, value))

    def fuse(
        self,
        *,
        now: datetime,
        acoustic_probability: float,
        labels: Sequence[LabelScore],
        phrases: Sequence[PhraseHit],
        rms_dbfs: float,
        pitch_hz: float,
    ) -> FusedScore:
        for name, value in (
            ("acoustic_probability", acoustic_probability),
            ("rms_dbfs", rms_dbfs),
            ("pitch_hz", pitch_hz),
        ):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        top = max(labels, key=lambda label: label.score, default=None)
        top_distress = max(
            (label for label in labels if label.label in DISTRESS_LABELS), key=lambda label: label.score, default=None
        )
        label = top_distress.label if top_distress else None
        if self.config.accumulation is None:
            acoustic = on_fusion_scale(acoustic_probability, self.config, label)
        else:
            acoustic = self._accumulate(self.config.accumulation, acoustic_probability, label, rms_dbfs)
        self.loudness.append(rms_dbfs)
        acoustic *= loudness_weight(rms_dbfs, self.config)
        if top is not None and top.label in VOICED_DISTRESS_LABELS and pitch_hz >= self.config.high_pitch_hz:
            acoustic = min(1.0, acoustic * self.config.high_pitch_boost)
        phrase = max((hit.score for hit in phrases), default=0.0) * self.config.phrase_weight
        score = 1.0 - (1.0 - acoustic) * (1.0 - phrase)
        threshold = self.threshold(now)
        release = threshold - self.config.hysteresis
        self.active = score >= (release if self.active else threshold)
        reason = explain(labels, phrases, rms_dbfs)
        if self.evidence_windows > 1:
            reason += f", over {self.evidence_windows} windows"
        return FusedScore(
            score=score,
            acoustic_probability=acoustic_probability,
            threshold=threshold,
            is_distress=self.active,
            reason=reason,
        )

    def _accumulate(self, rule: Accumulation, probability: float, label: str | None, rms_dbfs: float) -> float:
        """Add this window's evidence to the stream's sum; the acoustic score on the fusion scale."""
        point = self.config.label_operating_points.get(label or "", self.config.acoustic_operating_point)
        above = _logit(_clip(probability)) - _logit(point if point is not None else self.config.threshold)
        added = min(rule.cap, max(-rule.cap, above))
        if added > 0.0 and self.loudness:
            jump_db = rms_dbfs - statistics.median(self.loudness)
            added += rule.jump_weight * min(1.0, max(0.0, jump_db / rule.jump_full_db))
        total = rule.memory * self.evidence + added
        self.evidence_windows = self.evidence_windows + 1 if total > 0.0 else 0
        self.evidence = max(0.0, total)
        return 1.0 / (1.0 + math.exp(-(_logit(self.config.threshold) + total - rule.needed)))


def on_fusion_scale(probability: float, config: FusionConfig, label: str | None = None) -> float:
    """Shift in logit space so the classifier's operating point (``label``'s, where it has its own) lands exactly
    on the fusion threshold."""
    point = config.label_operating_points.get(label or "", config.acoustic_operating_point)
    if point is None:
        return probability
    shifted = _logit(_clip(probability)) - _logit(point) + _logit(config.threshold)
    return 1.0 / (1.0 + math.exp(-shifted))


def _clip(probability: float) -> float:
    return min(1.0 - 1e-9, max(1e-9, probability))


def _logit(probability: float) -> float:
    return math.log(probability / (1.0 - probability))


def loudness_weight(rms_dbfs: float, config: FusionConfig) -> float:
    span = config.full_weight_dbfs - config.quiet_floor_dbfs
    return min(1.0, max(0.0, (rms_dbfs - config.quiet_floor_dbfs) / span))


def explain(labels: Iterable[LabelScore], phrases: Iterable[PhraseHit], rms_dbfs: float) -> str:
    """Human-readable evidence, e.g. "scream 0.93 + 'help me' at 12.4 s (-8 dBFS)"."""
    parts = [
        f"{label.label} {label.score:.2f}"
        for label in sorted(labels, key=lambda item: -item.score)
        if label.label in DISTRESS_LABELS and label.score >= 0.3
    ][:2]
    parts += [f"'{hit.matched_text}' at {hit.start_s:.1f} s" for hit in sorted(phrases, key=lambda hit: -hit.score)[:2]]
    if not parts:
        return f"no distress evidence ({rms_dbfs:.0f} dBFS)"
    return " + ".join(parts) + f" ({rms_dbfs:.0f} dBFS)"
