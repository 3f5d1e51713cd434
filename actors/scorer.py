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


@dataclass(frozen=True)
class _PendingPatch:
    event: FeaturesExtracted
    state: _StreamState
    frames: npt.NDArray[np.float32]


class ScorerStage:
    """Consumes features, transcripts and incident feedback; emits ``DistressScored``.

    With ``batch_patches`` (the live stage) the patches of one consumed batch go through the classifier in one
    forward pass: one pass per patch costs ~5x more per patch than one over 16 (CPU, one thread), and at many
    streams a batch holds a chunk of many streams. Patches then wait in ``handle`` and are scored in ``tick``,
    which the runner calls after every batch and before it commits, so nothing is committed unscored; a transcript
    or operator feedback first scores what is waiting, so each stream's decisions keep their order. Batching
    starts once a batch with events has been ticked: a runner rebuilding a restarted stage's memory first feeds it
    recent input and drops what ``handle`` returns for it (``StageRunner`` ``recent_input``), so until then every
    patch is scored in ``handle``. Without ``batch_patches`` (offline use) every event is scored as it is handled.
    """

    name = "scorer"

    def __init__(
        self,
        catalogue: TopicCatalogue,
        classifier: DistressClassifier,
        fusion: FusionConfig,
        *,
        sensitivities: Mapping[str, float] | None = None,
        phrase_window_s: float = 4.0,
        batch_patches: bool = False,
    ) -> None:
        self.catalogue = catalogue
        self.classifier = classifier
        self.fusion_config = fusion
        self.sensitivities = dict(sensitivities or {})
        self.phrase_window_s = phrase_window_s
        self.batch_patches = batch_patches
        self._batching = False  # on once a batch with events has been ticked (see the class docstring)
        self._handled_since_tick = False
        self._streams: dict[str, _StreamState] = {}
        self._pending: list[_PendingPatch] = []

    def input_topics(self) -> Sequence[str]:
        return [self.catalogue.audio_features.name, self.catalogue.transcripts.name, self.catalogue.incidents.name]

    def handle(self, consumed: ConsumedEvent) -> Iterable[Event]:
        event = consumed.event
        self._handled_since_tick = True
        if isinstance(event, FeaturesExtracted):
            if not self._batching:
                return self._score_features(event)
            patch = self._patch_for(event)
            if patch is not None:
                self._pending.append(_PendingPatch(event, *patch))
            return ()
        if isinstance(event, TranscriptProduced):
            return [*self._score_pending(), *self._score_transcript(event)]
        if isinstance(event, IncidentMarkedFalseAlarm):
            scored = self._score_pending()
            self.record_false_alarm(event.stream_id, event.occurred_at)
            return scored
        return ()

    def tick(self) -> Iterable[Event]:
        self._batching = self._batching or (self.batch_patches and self._handled_since_tick)
        self._handled_since_tick = False
        return self._score_pending()

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
        patch = self._patch_for(event)
        if patch is None:
            return []
        state, frames = patch
        return [self._score_patch(event, state, self.classifier.predict(frames))]

    def _patch_for(self, event: FeaturesExtracted) -> tuple[_StreamState, npt.NDArray[np.float32]] | None:
        """The stream's state and its latest patch (a copy) once the event's frames are added; None while the
        stream has too few frames for a patch."""
        state = self._state(event.stream_id)
        frames = np.frombuffer(event.log_mel_f16, dtype="<f2").astype(np.float32).reshape(event.frames, event.n_mels)
        state.frames.extend(frames)
        if event.is_last:
            self._streams.pop(event.stream_id, None)
        if len(state.frames) < PATCH_FRAMES:
            return None  # the first ~second of a stream: not enough context for a patch yet
        return state, np.stack(state.frames)

    def _score_patch(self, event: FeaturesExtracted, state: _StreamState, scores: ClassScores) -> DistressScored:
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
        return self._decide(event, state, moment, phrases=(), model=scores)

    def _score_pending(self) -> list[Event]:
        if not self._pending:
            return []
        pending, self._pending = self._pending, []
        scores = self.classifier.predict_batch(np.stack([item.frames for item in pending]))
        return [self._score_patch(item.event, item.state, score) for item, score in zip(pending, scores, strict=True)]

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


def scorer_from_settings(settings: Settings, *, batch_patches: bool = False) -> ScorerStage:
    """The scorer as configured, knowing no operator feedback yet (offline use)."""
    classifier = DistressClassifier.load(settings.scorer.model_path, settings.scorer.encoder)
    fusion = FusionConfig(threshold=settings.scorer.threshold, hysteresis=settings.scorer.hysteresis,
                          acoustic_operating_point=classifier.threshold)
    return ScorerStage(
        settings.topics(),
        classifier,
        fusion,
        sensitivities={stream.id: stream.sensitivity for stream in settings.streams},
        phrase_window_s=settings.scorer.phrase_window_s,
        batch_patches=batch_patches,
    )


def build_scorer(settings: Settings) -> ScorerStage:
    """The live scorer: as configured, batching its patches, with operator feedback rebuilt from the whole
    incident history."""
    stage = scorer_from_settings(settings, batch_patches=True)
    for consumed in read_all(settings.bus(), [stage.catalogue.incidents.name]):
        if isinstance(consumed.event, IncidentMarkedFalseAlarm):
            stage.record_false_alarm(consumed.event.stream_id, consumed.event.occurred_at)
    return stage
