"""The scorer stage: classifier + fusion → one DistressScored per chunk, plus one per transcript with phrases.

Acoustic scores come from the most recent ``PATCH_FRAMES`` log-mel frames of each stream. Speech arrives later than
the acoustics (ASR needs the end of a phrase), so a transcript with distress phrases is scored when it arrives,
fused with the strongest acoustic evidence seen during the words it covers — that way a scream followed by "help"
is one strong decision, and a calm "call the police" is still caught without any acoustic support.

Operator feedback: ``IncidentMarkedFalseAlarm`` events raise that stream's threshold (bounded and decaying, see
``models.fusion``). The feedback is rebuilt from the incidents topic at start, and every DistressScored records
the threshold it was judged against, so each adjustment is auditable from events alone.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from config import Settings
from events import Event
from events.bus import ConsumedEvent, read_all
from events.catalogue import (
    DistressScored,
    FeaturesExtracted,
    IncidentMarkedFalseAlarm,
    LabelScore,
    PhraseHit,
    TranscriptProduced,
)
from events.topics import TopicCatalogue
from models.classifier import PATCH_FRAMES, ClassScores, DistressClassifier
from models.features import FeatureConfig
from models.fusion import FusionConfig, StreamFusion

log = logging.getLogger(__name__)

FRAMES = FeatureConfig()
SAMPLE_RATE = FRAMES.sample_rate
TOP_LABELS = 3


@dataclass(frozen=True, kw_only=True)
class AcousticMoment:
    """What the classifier said about the patch ending at one chunk; kept briefly to fuse late transcripts."""

    sequence: int
    sample_offset: int
    end_s: float
    probability: float
    labels: tuple[LabelScore, ...]
    rms_dbfs: float
    pitch_hz: float


@dataclass
class _StreamState:
    fusion: StreamFusion
    frames: deque[npt.NDArray[np.float32]] = field(default_factory=lambda: deque(maxlen=PATCH_FRAMES))
    recent: deque[AcousticMoment] = field(default_factory=lambda: deque(maxlen=64))


class ScorerStage:
    """Consumes features, transcripts and incident feedback; emits ``DistressScored``."""

    name = "scorer"

    def __init__(
        self,
        catalogue: TopicCatalogue,
        classifier: DistressClassifier,
        fusion: FusionConfig,
        *,
        sensitivities: Mapping[str, float] | None = None,
        phrase_window_s: float = 4.0,
    ) -> None:
        self.catalogue = catalogue
        self.classifier = classifier
        self.fusion_config = fusion
        self.sensitivities = dict(sensitivities or {})
        self.phrase_window_s = phrase_window_s
        self._streams: dict[str, _StreamState] = {}

    def input_topics(self) -> Sequence[str]:
        return [self.catalogue.audio_features.name, self.catalogue.transcripts.name, self.catalogue.incidents.name]

    def handle(self, consumed: ConsumedEvent) -> Iterable[Event]:
        event = consumed.event
        if isinstance(event, FeaturesExtracted):
            return self._score_features(event)
        if isinstance(event, TranscriptProduced):
            return self._score_transcript(event)
        if isinstance(event, IncidentMarkedFalseAlarm):
            self.record_false_alarm(event.stream_id, event.occurred_at)
        return ()

    def tick(self) -> Iterable[Event]:
        return ()

    def threshold_for(self, stream_id: str, now: datetime) -> float:
        return self._state(stream_id).fusion.threshold(now)

    def record_false_alarm(self, stream_id: str, when: datetime) -> None:
        state = self._state(stream_id)
        before = state.fusion.threshold(when)
        state.fusion.record_false_alarm(when)
        log.info("threshold raised by operator feedback",
                 extra={"stream_id": stream_id, "threshold_before": round(before, 3),
                        "threshold_after": round(state.fusion.threshold(when), 3)})

    # ------------------------------------------------------------------------------------------- scoring

    def _score_features(self, event: FeaturesExtracted) -> list[Event]:
        state = self._state(event.stream_id)
        frames = np.frombuffer(event.log_mel_f16, dtype="<f2").astype(np.float32).reshape(event.frames, event.n_mels)
        state.frames.extend(frames)
        if event.is_last:
            self._streams.pop(event.stream_id, None)
        if len(state.frames) < PATCH_FRAMES:
            return []  # the first ~second of a stream: not enough context for a patch yet
        scores = self.classifier.predict(np.stack(state.frames))
        labels = top_labels(scores)
        end_sample = (event.first_frame + event.frames - 1) * FRAMES.hop_length + FRAMES.win_length
        moment = AcousticMoment(
            sequence=event.sequence,
            sample_offset=event.sample_offset,
            end_s=end_sample / SAMPLE_RATE,
            probability=scores.distress_probability,
            labels=labels,
            rms_dbfs=event.summary.rms_dbfs_max,
            pitch_hz=event.summary.pitch_hz_median,
        )
        state.recent.append(moment)
        return [self._decide(event, state, moment, phrases=(), model=scores)]

    def _score_transcript(self, event: TranscriptProduced) -> list[Event]:
        if not event.phrases:
            return []
        state = self._state(event.stream_id)
        start_s = event.start_sample / SAMPLE_RATE - self.phrase_window_s
        end_s = event.end_sample / SAMPLE_RATE
        during = [moment for moment in state.recent if start_s <= moment.end_s <= end_s + 1.0]
        strongest = max(during, key=lambda moment: moment.probability, default=None)
        moment = strongest or AcousticMoment(
            sequence=event.last_sequence, sample_offset=event.start_sample, end_s=end_s, probability=0.0,
            labels=(), rms_dbfs=-30.0, pitch_hz=0.0,
        )
        anchor = AcousticMoment(
            sequence=event.last_sequence, sample_offset=event.start_sample, end_s=end_s,
            probability=moment.probability, labels=moment.labels, rms_dbfs=moment.rms_dbfs, pitch_hz=moment.pitch_hz,
        )
        return [self._decide(event, state, anchor, phrases=event.phrases, model=None)]

    def _decide(self, cause: Event, state: _StreamState, moment: AcousticMoment, *, phrases: tuple[PhraseHit, ...],
                model: ClassScores | None) -> DistressScored:
        fused = state.fusion.fuse(
            now=cause.occurred_at,
            acoustic_probability=moment.probability,
            labels=moment.labels,
            phrases=phrases,
            rms_dbfs=moment.rms_dbfs,
            pitch_hz=moment.pitch_hz,
        )
        return DistressScored(
            **cause.caused(),
            sequence=moment.sequence,
            sample_offset=moment.sample_offset,
            score=fused.score,
            acoustic_probability=fused.acoustic_probability,
            threshold=fused.threshold,
            is_distress=fused.is_distress,
            labels=moment.labels,
            phrases=phrases,
            rms_dbfs=moment.rms_dbfs,
            pitch_hz=moment.pitch_hz,
            reason=fused.reason,
            model_id=model.model_id if model else self.classifier.model_id,
            model_version=model.model_version if model else self.classifier.model_version,
        )

    def _state(self, stream_id: str) -> _StreamState:
        state = self._streams.get(stream_id)
        if state is None:
            fusion = StreamFusion(self.fusion_config, sensitivity=self.sensitivities.get(stream_id, 1.0))
            state = self._streams[stream_id] = _StreamState(fusion=fusion)
        return state


def top_labels(scores: ClassScores, count: int = TOP_LABELS) -> tuple[LabelScore, ...]:
    ranked = sorted(zip(scores.labels, scores.probabilities, strict=True), key=lambda pair: -pair[1])
    return tuple(LabelScore(label=label, score=round(float(score), 4)) for label, score in ranked[:count])


def scorer_from_settings(settings: Settings) -> ScorerStage:
    """The scorer as configured, knowing no operator feedback yet (offline use)."""
    classifier = DistressClassifier.load(settings.scorer.model_path)
    fusion = FusionConfig(threshold=settings.scorer.threshold, hysteresis=settings.scorer.hysteresis,
                          acoustic_operating_point=classifier.threshold)
    return ScorerStage(
        settings.topics(),
        classifier,
        fusion,
        sensitivities={stream.id: stream.sensitivity for stream in settings.streams},
        phrase_window_s=settings.scorer.phrase_window_s,
    )


def build_scorer(settings: Settings) -> ScorerStage:
    """The live scorer: as configured, with operator feedback rebuilt from the whole incident history."""
    stage = scorer_from_settings(settings)
    for consumed in read_all(settings.bus(), [stage.catalogue.incidents.name]):
        if isinstance(consumed.event, IncidentMarkedFalseAlarm):
            stage.record_false_alarm(consumed.event.stream_id, consumed.event.occurred_at)
    return stage
