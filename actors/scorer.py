"""The scorer stage: classifier + fusion → one DistressScored per chunk, plus one per transcript with phrases.

Acoustic scores come from the most recent ``PATCH_FRAMES`` log-mel frames of each capture run. A transcript with
distress phrases is fused with the strongest acoustic evidence seen during the words it covers — that way a scream
followed by "help" is one strong decision, and a calm "call the police" is still caught without any acoustic
support. Speech normally arrives after its acoustics (ASR needs the end of a phrase), but a stage that fell behind
can read the transcripts topic first, so a transcript waits until its run's acoustics reach its end (at most
``TRANSCRIPT_HOLD_S``, in case the features stage is down): each stream's decisions stay in stream-time order and
an incident opens at the scream, not at the words that followed it.

Operator feedback: ``IncidentMarkedFalseAlarm`` events raise that stream's threshold (bounded and decaying, see
``models.fusion``). The feedback is rebuilt from the incidents topic at start, and every DistressScored records
the threshold it was judged against, so each adjustment is auditable from events alone.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from config import Settings
from domain.audio import SAMPLE_RATE
from events import Event
from events.catalogue import (
    DistressScored,
    FeaturesExtracted,
    IncidentMarkedFalseAlarm,
    LabelScore,
    PhraseHit,
    TranscriptProduced,
)
from events.kafka.consumer import ConsumedEvent
from events.kafka.log import read_all
from events.topics import TopicCatalogue
from models.acoustic import AcousticModel, front_end_for, load_acoustic_model
from models.classifier import PATCH_FRAMES, ClassScores
from models.features import FeatureConfig
from models.fusion import FusionConfig, StreamFusion

log = logging.getLogger(__name__)

FRAMES = FeatureConfig()
TOP_LABELS = 3
TRANSCRIPT_HOLD_S = 5.0  # wall-clock wait for a transcript's acoustics before it is scored without them
COVER_SLACK_S = 0.1  # acoustics this close to a transcript's end cover it (the last frame of a chunk ends early)
ENDED_RUNS_KEPT = 64  # finished capture runs remembered for transcripts that arrive after the run's last chunk
RunKey = tuple[str, str | None]  # (stream id, correlation id): one capture run of one stream


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


@dataclass(frozen=True)
class _HeldTranscript:
    event: TranscriptProduced
    since: float  # wall clock (monotonic) when it arrived


@dataclass
class _RunState:
    """One capture run's acoustic context: its sample offsets start at 0, so a restarted capture gets a new one."""

    frames: deque[npt.NDArray[np.float32]] = field(default_factory=lambda: deque(maxlen=PATCH_FRAMES))
    recent: deque[AcousticMoment] = field(default_factory=lambda: deque(maxlen=64))
    acoustic_end_s: float = -math.inf  # how far into the run the features reach
    ended: bool = False
    held: list[_HeldTranscript] = field(default_factory=list)


@dataclass(frozen=True)
class _PendingPatch:
    event: FeaturesExtracted
    run: _RunState
    frames: npt.NDArray[np.float32]


class ScorerStage:
    """Consumes features, transcripts and incident feedback; emits ``DistressScored``.

    With ``batch_patches`` (the live stage) the patches of one consumed batch go through the classifier in one
    forward pass: one pass per patch costs ~5x more per patch than one over 16 (CPU, one thread), and at many
    streams a batch holds a chunk of many streams. Patches then wait in ``handle`` and are scored in ``tick``,
    which the runner calls after every batch and before it commits, so no patch is committed unscored; a
    transcript or operator feedback first scores what is waiting, so each stream's decisions keep their order.
    Batching starts once a batch with events has been ticked: a runner rebuilding a restarted stage's memory first
    feeds it recent input and drops what ``handle`` returns for it (``StageRunner`` ``recent_input``), so until
    then every patch is scored in ``handle``. Without ``batch_patches`` (offline use) every event is scored as it
    is handled. A transcript waiting for its acoustics (see the module docstring) may be committed before it is
    scored; if the stage then crashes, that replay of recent input brings it back, still waiting.
    """

    name = "scorer"

    def __init__(
        self,
        catalogue: TopicCatalogue,
        classifier: AcousticModel,
        fusion: FusionConfig,
        *,
        log_mel: str = "power",
        sensitivities: Mapping[str, float] | None = None,
        phrase_window_s: float = 4.0,
        batch_patches: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalogue = catalogue
        self.classifier = classifier
        self.log_mel = log_mel  # the kind of frames the classifier reads (FeaturesExtracted.log_mel)
        self.fusion_config = fusion
        self.sensitivities = dict(sensitivities or {})
        self.phrase_window_s = phrase_window_s
        self.batch_patches = batch_patches
        self.clock = clock
        self._batching = False  # on once a batch with events has been ticked (see the class docstring)
        self._handled_since_tick = False
        self._fusions: dict[str, StreamFusion] = {}  # per stream, across runs: operator feedback outlives a run
        self._runs: dict[RunKey, _RunState] = {}
        self._ended: OrderedDict[RunKey, _RunState] = OrderedDict()
        self._pending: list[_PendingPatch] = []

    def input_topics(self) -> Sequence[str]:
        return [self.catalogue.audio_features.name, self.catalogue.transcripts.name, self.catalogue.incidents.name]

    def handle(self, consumed: ConsumedEvent) -> Iterable[Event]:
        event = consumed.event
        self._handled_since_tick = True
        if isinstance(event, FeaturesExtracted):
            if event.log_mel != self.log_mel:
                log.warning(
                    "features of another kind than the model reads; not scored",
                    extra={"stream_id": event.stream_id, "log_mel": event.log_mel, "model_reads": self.log_mel},
                )
                return ()
            if not self._batching:
                return self._score_features(event)
            run, patch = self._patch_for(event)
            if patch is None:
                return self._release(run)  # no patch of this run is waiting, so its transcripts can go first
            self._pending.append(_PendingPatch(event, run, patch))
            return ()
        if isinstance(event, TranscriptProduced):
            if not event.phrases:
                return ()
            scored = self._score_pending()
            run = self._run_of(event)
            run.held.append(_HeldTranscript(event, since=self.clock()))
            return [*scored, *self._release(run)]
        if isinstance(event, IncidentMarkedFalseAlarm):
            scored = self._score_pending()
            self.record_false_alarm(event.stream_id, event.occurred_at)
            return scored
        return ()

    def tick(self) -> Iterable[Event]:
        self._batching = self._batching or (self.batch_patches and self._handled_since_tick)
        self._handled_since_tick = False
        scored = self._score_pending()
        for key, run in list(self._runs.items()):
            scored += self._release(run)
            if not run.frames and not run.held:
                del self._runs[key]  # only waited for transcripts: no acoustic context to keep
        return scored

    def threshold_for(self, stream_id: str, now: datetime) -> float:
        return self._fusion(stream_id).threshold(now)

    def record_false_alarm(self, stream_id: str, when: datetime) -> None:
        fusion = self._fusion(stream_id)
        before = fusion.threshold(when)
        fusion.record_false_alarm(when)
        log.info(
            "threshold raised by operator feedback",
            extra={
                "stream_id": stream_id,
                "threshold_before": round(before, 3),
                "threshold_after": round(fusion.threshold(when), 3),
            },
        )

    # ------------------------------------------------------------------------------------------- scoring

    def _score_features(self, event: FeaturesExtracted) -> list[Event]:
        run, frames = self._patch_for(event)
        scored: list[Event] = []
        if frames is not None:
            scored.append(self._score_patch(event, run, self.classifier.predict(frames)))
        return [*scored, *self._release(run)]

    def _patch_for(self, event: FeaturesExtracted) -> tuple[_RunState, npt.NDArray[np.float32] | None]:
        """The event's run once its frames are added, and the run's latest patch (a copy); no patch while the
        run has too few frames for one."""
        key = (event.stream_id, event.correlation_id)
        run = self._runs.setdefault(key, _RunState())
        frames = np.frombuffer(event.log_mel_f16, dtype="<f2").astype(np.float32).reshape(event.frames, event.n_mels)
        run.frames.extend(frames)
        run.acoustic_end_s = max(run.acoustic_end_s, frames_end_s(event))
        patch = np.stack(run.frames) if len(run.frames) == PATCH_FRAMES else None  # none in a run's first second
        if event.is_last:
            run.ended = True
            run.frames.clear()
            self._ended[key] = self._runs.pop(key)
            while len(self._ended) > ENDED_RUNS_KEPT:
                self._ended.popitem(last=False)
        return run, patch

    def _score_patch(self, event: FeaturesExtracted, run: _RunState, scores: ClassScores) -> DistressScored:
        labels = top_labels(scores)
        moment = AcousticMoment(
            sequence=event.sequence,
            sample_offset=event.sample_offset,
            end_s=frames_end_s(event),
            probability=scores.distress_probability,
            labels=labels,
            rms_dbfs=event.summary.rms_dbfs_max,
            pitch_hz=event.summary.pitch_hz_median,
        )
        run.recent.append(moment)
        return self._decide(event, moment, phrases=(), model=scores)

    def _score_pending(self) -> list[Event]:
        if not self._pending:
            return []
        pending, self._pending = self._pending, []
        scores = self.classifier.predict_batch(np.stack([item.frames for item in pending]))
        scored: list[Event] = [
            self._score_patch(item.event, item.run, score) for item, score in zip(pending, scores, strict=True)
        ]
        for run in {id(item.run): item.run for item in pending}.values():
            scored += self._release(run)
        return scored

    def _run_of(self, transcript: TranscriptProduced) -> _RunState:
        """The run a transcript's words were captured in: live, recently ended, or not heard from yet."""
        key = (transcript.stream_id, transcript.correlation_id)
        run = self._runs.get(key) or self._ended.get(key)
        if run is None:
            run = self._runs[key] = _RunState()
        return run

    def _release(self, run: _RunState) -> list[Event]:
        """Scores for the run's waiting transcripts that its acoustics now cover (or that waited long enough)."""
        if not run.held:
            return []
        now = self.clock()
        ready: list[_HeldTranscript] = []
        waiting: list[_HeldTranscript] = []
        for held in run.held:
            covered = held.event.end_sample / SAMPLE_RATE <= run.acoustic_end_s + COVER_SLACK_S
            (ready if run.ended or covered or now - held.since >= TRANSCRIPT_HOLD_S else waiting).append(held)
        run.held = waiting
        return [self._score_transcript(run, held.event) for held in ready]

    def _score_transcript(self, run: _RunState, event: TranscriptProduced) -> DistressScored:
        start_s = event.start_sample / SAMPLE_RATE - self.phrase_window_s
        end_s = event.end_sample / SAMPLE_RATE
        during = [moment for moment in run.recent if start_s <= moment.end_s <= end_s + 1.0]
        strongest = max(during, key=lambda moment: moment.probability, default=None)
        moment = strongest or AcousticMoment(
            sequence=event.last_sequence,
            sample_offset=event.start_sample,
            end_s=end_s,
            probability=0.0,
            labels=(),
            rms_dbfs=-30.0,
            pitch_hz=0.0,
        )
        anchor = AcousticMoment(
            sequence=event.last_sequence,
            sample_offset=event.start_sample,
            end_s=end_s,
            probability=moment.probability,
            labels=moment.labels,
            rms_dbfs=moment.rms_dbfs,
            pitch_hz=moment.pitch_hz,
        )
        return self._decide(event, anchor, phrases=event.phrases, model=None)

    def _decide(
        self, cause: Event, moment: AcousticMoment, *, phrases: tuple[PhraseHit, ...], model: ClassScores | None
    ) -> DistressScored:
        fused = self._fusion(cause.stream_id).fuse(
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

    def _fusion(self, stream_id: str) -> StreamFusion:
        fusion = self._fusions.get(stream_id)
        if fusion is None:
            fusion = self._fusions[stream_id] = StreamFusion(
                self.fusion_config, sensitivity=self.sensitivities.get(stream_id, 1.0)
            )
        return fusion


def frames_end_s(event: FeaturesExtracted) -> float:
    """Where the event's last frame ends in its run, in seconds."""
    return ((event.first_frame + event.frames - 1) * FRAMES.hop_length + FRAMES.win_length) / SAMPLE_RATE


def top_labels(scores: ClassScores, count: int = TOP_LABELS) -> tuple[LabelScore, ...]:
    ranked = sorted(zip(scores.labels, scores.probabilities, strict=True), key=lambda pair: -pair[1])
    return tuple(LabelScore(label=label, score=round(float(score), 4)) for label, score in ranked[:count])


def scorer_from_settings(settings: Settings, *, batch_patches: bool = False) -> ScorerStage:
    """The scorer as configured, knowing no operator feedback yet (offline use)."""
    classifier = load_acoustic_model(settings.scorer.model_path, settings.scorer.encoder, settings.yamnet_path)
    fusion = FusionConfig(
        threshold=settings.scorer.threshold,
        hysteresis=settings.scorer.hysteresis,
        acoustic_operating_point=classifier.threshold,
        label_operating_points=classifier.label_thresholds,
        accumulation=classifier.accumulation,
    )
    return ScorerStage(
        settings.topics(),
        classifier,
        fusion,
        log_mel=front_end_for(settings.scorer.model_path).name,
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
