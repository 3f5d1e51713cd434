"""Incidents: turning per-window distress scores into a few explainable incidents, as events.

The rules (every number comes from ``IncidentConfig``; times are *stream* seconds from sample offsets, so a replay
or a what-if run makes the same decisions as the live pipeline did):

* **Debounce** - an incident opens when ``debounce_hits`` of the last ``debounce_windows`` scored windows are
  positive (``is_distress``), or at once for one window scoring ``strong_score`` or more. The onset is the first
  positive window of that run.
* **Merge** - while an incident is open, a positive window within ``merge_gap_s`` of its last evidence is merged
  into it; a positive window further away must pass the debounce again to count (one stray blip must not keep an
  incident alive).
* **Quiet period** - an incident auto-resolves (actor ``system``) after ``quiet_period_s`` without evidence, or
  when no scored audio arrived for that long on the wall clock (a stream that died).
* **Cooldown** - after an incident closes (auto or by an operator) no new incident opens on that stream for
  ``cooldown_s``, so one long event is one incident, not fifty.
* **Severity** (never decreases; a rise is an ``IncidentEscalated`` with the evidence as reason):
  ``critical`` when two independent kinds of evidence coincide - a spoken call for help, a vocal distress label
  (``vocal_labels``: scream, shout, crying) and an impact label (``impact_labels``: glass, impact), any two;
  ``high`` for a spoken call for help alone or a score of ``high_score`` or more; ``medium`` from
  ``medium_score``; ``low`` otherwise. A label counts from ``label_min_score``.
* **Evidence clip** - the audio from ``clip_pre_s`` before the onset to ``clip_post_s`` after the triggering
  window, taken from a bounded per-stream PCM buffer. The incident opens immediately (lowest alert latency); the
  clip follows in an ``IncidentUpdated`` once the post-roll audio has arrived. Streams with ``store_audio =
  false`` (privacy mode) keep detections, labels and transcripts but never audio. A clip the store cannot write
  (disk full) does not hold the incident back: it opens and alerts without one, and an ``IncidentNoteAdded`` by
  ``system`` marks its evidence missing.

Events derived from an input get deterministic ids (a hash of the cause, the transition and the incident), so a
batch re-delivered after a crash yields the same events and downstream consumers can drop the duplicates.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from actors.clips import ClipStore
from actors.incidents.audio_buffer import AudioBuffer
from actors.incidents.evidence import Evidence, assess_severity, describe
from actors.incidents.state import PendingClip, Published, StreamState, TrackedIncident
from config.settings import IncidentConfig
from domain.incidents import derived_event_id, fold_incidents, incident_id_for
from domain.types import SYSTEM_ACTOR, severity_rank
from events import Event
from events.catalogue import (
    AudioChunkCaptured,
    DistressScored,
    IncidentEscalated,
    IncidentEvent,
    IncidentMarkedFalseAlarm,
    IncidentNoteAdded,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    TranscriptProduced,
)

log = logging.getLogger(__name__)

# Extra wall-clock wait for post-roll audio before a clip is written with what has arrived.
CLIP_STALL_SLACK_S = 2.0


class IncidentEngine:
    """The incident rules over the score, transcript, audio and incident events of many streams.

    Plain logic with an injected clock: the live stage, the tests and the what-if replay all drive it.
    """

    def __init__(
        self,
        config: IncidentConfig,
        *,
        clip_store: ClipStore | None,
        stores_audio: Callable[[str], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clip_store = clip_store
        self.stores_audio = stores_audio
        self.clock = clock
        self.streams: dict[str, StreamState] = {}

    # ------------------------------------------------------------------------------------------ inputs

    def restore(self, history: Iterable[Event]) -> int:
        """Adopt the incidents still open in the event history (event sourcing); returns how many.

        A stream whose latest incident is closed keeps its cooldown within that capture run. The history does not
        say at what stream time the incident closed, so the cooldown is taken to end ``cooldown_s`` after its onset:
        the least it can have been.
        """
        events = [event for event in history if isinstance(event, IncidentEvent)]
        latest_event = {event.incident_id: event.event_id for event in events}
        restored = 0
        for record in sorted(fold_incidents(events).values(), key=lambda item: item.opened_at):
            state = self._stream(record.stream_id)
            state.run = record.correlation_id
            if record.closed:
                state.active = None
                state.cooldown_until_s = record.onset_sample / state.audio.sample_rate + self.config.cooldown_s
                continue
            evidence = Evidence.of(record)
            clip = (record.clip_sha256, record.clip_duration_s or 0.0) if record.clip_sha256 else None
            state.active = TrackedIncident(
                incident_id=record.incident_id,
                stream_id=record.stream_id,
                correlation_id=record.correlation_id,
                severity=record.severity,
                onset_sample=record.onset_sample,
                evidence=evidence,
                published=self._snapshot(evidence, clip),
                last_evidence_s=None,
                last_cause_id=latest_event[record.incident_id],
                clip=clip,
            )
            state.last_scored_at = self.clock()
            restored += 1
        return restored

    def on_score(self, scored: DistressScored) -> list[Event]:
        state = self._stream(scored.stream_id)
        state.last_scored_at = self.clock()
        if state.run is not None and scored.correlation_id != state.run:
            self._new_session(state)
        state.run = scored.correlation_id
        if not state.is_news(scored):
            return []
        now_s = state.now_s
        events: list[Event] = []
        incident = state.active
        if incident is not None:
            if incident.last_evidence_s is None:
                incident.last_evidence_s = now_s
            quiet_s = now_s - incident.last_evidence_s
            if quiet_s >= self.config.quiet_period_s:
                events += self._resolve(state, incident, scored.event_id, f"quiet for {quiet_s:.0f} s")
        state.windows.append(scored)
        if not scored.is_distress:
            return events
        positives = [window for window in state.windows if window.is_distress]
        strong = scored.score >= self.config.strong_score
        confirmed = strong or len(positives) >= self.config.debounce_hits
        incident = state.active
        if incident is not None:
            assert incident.last_evidence_s is not None
            if confirmed or now_s - incident.last_evidence_s <= self.config.merge_gap_s:
                for window in positives if confirmed else [scored]:
                    incident.evidence.add_score(window)
                incident.last_evidence_s = now_s
                incident.last_cause_id = scored.event_id
                events += self._publish_changes(incident, scored.event_id)
            return events
        if not confirmed:
            return events
        if now_s < state.cooldown_until_s:
            state.suppressed += 1
            log.info(
                "detection suppressed by cooldown",
                extra={"stream_id": scored.stream_id, "sample_offset": scored.sample_offset},
            )
            return events
        why = (
            f"one strong window ({scored.score:.2f} >= {self.config.strong_score:.2f})"
            if strong
            else f"{len(positives)} of the last {len(state.windows)} windows positive"
        )
        events.append(opened := self._open(state, positives, scored, why))
        if state.active is not None and state.active.incident_id == opened.incident_id:
            events += self._clip_missing_note(state.active, scored.event_id)
        return events

    def on_transcript(self, transcript: TranscriptProduced) -> list[Event]:
        if transcript.is_partial:
            return []  # superseded by the final transcript of the same span
        state = self._stream(transcript.stream_id)
        state.transcripts.append(transcript)
        incident = state.active
        pre = int(self.config.clip_pre_s * state.audio.sample_rate)
        if incident is None or transcript.end_sample < incident.onset_sample - pre:
            return []
        incident.evidence.add_transcript(transcript)
        return self._publish_changes(incident, transcript.event_id)

    def on_audio(self, chunk: AudioChunkCaptured) -> list[Event]:
        state = self._stream(chunk.stream_id)
        state.last_audio_at = self.clock()
        keep_audio = self.clip_store is not None and self.stores_audio(chunk.stream_id)
        hold_from = min((pending.start for pending in state.pending_clips), default=None)
        state.audio.add(chunk, keep_audio=keep_audio, hold_from=hold_from)
        due = [pending for pending in state.pending_clips if chunk.is_last or state.audio.end >= pending.end]
        return self._write_clips(state, due, chunk.event_id)

    def on_incident_event(self, event: IncidentEvent) -> list[Event]:
        """Operator decisions (and other actors' escalations) about the incident this engine is tracking."""
        state = self.streams.get(event.stream_id)
        incident = state.active if state else None
        if state is None or incident is None or incident.incident_id != event.incident_id:
            return []
        if isinstance(event, IncidentResolved | IncidentMarkedFalseAlarm):
            self._close(state, incident)
        elif isinstance(event, IncidentEscalated) and severity_rank(event.to_severity) > severity_rank(
            incident.severity
        ):
            incident.severity = event.to_severity
        return []

    def tick(self) -> list[Event]:
        """Wall-clock timeouts: streams that stopped delivering scores, clips whose post-roll never came."""
        now = self.clock()
        events: list[Event] = []
        for state in self.streams.values():
            incident = state.active
            if incident is not None and now - state.last_scored_at >= self.config.quiet_period_s:
                events += self._resolve(
                    state, incident, incident.last_cause_id, f"no analysed audio for {self.config.quiet_period_s:.0f} s"
                )
            stalled = [
                pending
                for pending in state.pending_clips
                if now - max(state.last_audio_at, pending.requested_at) >= self.config.clip_post_s + CLIP_STALL_SLACK_S
            ]
            if stalled:
                events += self._write_clips(state, stalled, stalled[0].incident.last_cause_id)
        return events

    def active_incident(self, stream_id: str) -> str | None:
        state = self.streams.get(stream_id)
        return state.active.incident_id if state and state.active else None

    # ------------------------------------------------------------------------------------- transitions

    def _open(
        self, state: StreamState, positives: list[DistressScored], trigger: DistressScored, why: str
    ) -> IncidentOpened:
        onset = min(positives, key=lambda window: window.sample_offset)  # a phrase score arrives behind its start
        incident_id = incident_id_for(trigger.stream_id, trigger.event_id)
        evidence = Evidence()
        for window in positives:
            evidence.add_score(window)
        rate = state.audio.sample_rate
        pre = int(self.config.clip_pre_s * rate)
        for transcript in state.transcripts:
            if transcript.end_sample >= onset.sample_offset - pre:
                evidence.add_transcript(transcript)
        severity, severity_reason = assess_severity(evidence, self.config)
        envelope = trigger.caused()
        incident = TrackedIncident(
            incident_id=incident_id,
            stream_id=trigger.stream_id,
            correlation_id=envelope["correlation_id"],
            severity=severity,
            onset_sample=onset.sample_offset,
            evidence=evidence,
            published=self._snapshot(evidence, None),
            last_evidence_s=state.now_s,
            last_cause_id=trigger.event_id,
        )
        state.active = incident
        if self.clip_store is not None and self.stores_audio(trigger.stream_id):
            end = trigger.sample_offset + state.audio.chunk_samples(trigger.sample_offset)
            pending = PendingClip(
                incident, max(0, onset.sample_offset - pre), end + int(self.config.clip_post_s * rate), self.clock()
            )
            if state.audio.end >= pending.end:
                self._store_clip(state, pending)
            else:
                state.pending_clips.append(pending)
        incident.published = self._snapshot(evidence, incident.clip)
        return IncidentOpened(
            **envelope,
            event_id=derived_event_id(trigger.event_id, "opened", incident_id),
            incident_id=incident_id,
            severity=severity,
            score=evidence.score,
            reason=f"{why}; {severity}: {severity_reason}; {trigger.reason}".rstrip("; "),
            onset_sample=onset.sample_offset,
            onset_at=state.audio.captured_at(onset.sample_offset) or onset.occurred_at,
            labels=evidence.label_scores(),
            phrases=evidence.phrase_hits(),
            transcript=evidence.transcript(),
            clip_sha256=incident.clip[0] if incident.clip else None,
            clip_duration_s=incident.clip[1] if incident.clip else None,
        )

    def _publish_changes(self, incident: TrackedIncident, cause_id: str) -> list[Event]:
        """An update when the evidence changed materially, then an escalation when it supports a higher severity."""
        events: list[Event] = []
        evidence = incident.evidence
        now = self._snapshot(evidence, incident.clip)
        before = incident.published
        if (
            now.labels - before.labels
            or now.phrases - before.phrases
            or now.transcript != before.transcript
            or now.clip != before.clip
            or now.score >= before.score + self.config.update_score_step
        ):
            incident.published = now
            events.append(
                IncidentUpdated(
                    **self._envelope(incident, cause_id, "updated"),
                    incident_id=incident.incident_id,
                    score=evidence.score,
                    reason=describe(evidence, self.config),
                    labels=evidence.label_scores(),
                    phrases=evidence.phrase_hits(),
                    transcript=evidence.transcript(),
                    clip_sha256=incident.clip[0] if incident.clip else None,
                    clip_duration_s=incident.clip[1] if incident.clip else None,
                )
            )
        severity, why = assess_severity(evidence, self.config)
        if not incident.closed and severity_rank(severity) > severity_rank(incident.severity):
            events.append(
                IncidentEscalated(
                    **self._envelope(incident, cause_id, f"escalated-{severity}"),
                    incident_id=incident.incident_id,
                    from_severity=incident.severity,
                    to_severity=severity,
                    reason=why,
                )
            )
            incident.severity = severity
        return events

    def _resolve(self, state: StreamState, incident: TrackedIncident, cause_id: str, reason: str) -> list[Event]:
        self._close(state, incident)
        return [
            IncidentResolved(
                **self._envelope(incident, cause_id, "resolved"),
                incident_id=incident.incident_id,
                actor=SYSTEM_ACTOR,
                reason=reason,
                note="",
            )
        ]

    def _close(self, state: StreamState, incident: TrackedIncident) -> None:
        incident.closed = True
        state.active = None
        state.cooldown_until_s = state.now_s + self.config.cooldown_s

    def _write_clips(self, state: StreamState, due: list[PendingClip], cause_id: str) -> list[Event]:
        events: list[Event] = []
        for pending in due:
            state.pending_clips.remove(pending)
            if self._store_clip(state, pending):
                events += self._publish_changes(pending.incident, cause_id)
            else:
                events += self._clip_missing_note(pending.incident, cause_id)
        return events

    def _store_clip(self, state: StreamState, pending: PendingClip) -> bool:
        assert self.clip_store is not None
        pcm16 = state.audio.pcm16(pending.start, pending.end)
        if not pcm16:
            log.warning("no audio retained for the evidence clip", extra={"incident_id": pending.incident.incident_id})
            return False
        try:
            stored = self.clip_store.put_pcm16(pcm16, state.audio.sample_rate)
        except OSError as error:  # disk full, read-only, gone: the incident matters more than its recording
            log.error(
                "evidence clip not stored", extra={"incident_id": pending.incident.incident_id, "error": str(error)}
            )
            pending.incident.clip_missing = error.strerror or str(error)
            return False
        pending.incident.clip = (stored.sha256, stored.duration_s)
        return True

    def _clip_missing_note(self, incident: TrackedIncident, cause_id: str) -> list[Event]:
        """A system note on the incident's timeline that its evidence clip is missing, and why (said once)."""
        if incident.clip_missing is None:
            return []
        why, incident.clip_missing = incident.clip_missing, None
        return [
            IncidentNoteAdded(
                **self._envelope(incident, cause_id, "clip-missing"),
                incident_id=incident.incident_id,
                actor=SYSTEM_ACTOR,
                note=f"evidence clip missing: the clip store could not write it ({why})",
            )
        ]

    def _new_session(self, state: StreamState) -> None:
        """Scores of another capture run: its sample offsets start again, and so does stream-time state."""
        state.windows.clear()
        state.transcripts.clear()
        state.phrase_scores.clear()
        state.clock_sample = None
        state.cooldown_until_s = -math.inf
        if state.active is not None:
            state.active.last_evidence_s = None

    # ------------------------------------------------------------------------------------------ helpers

    def _stream(self, stream_id: str) -> StreamState:
        state = self.streams.get(stream_id)
        if state is None:
            state = self.streams[stream_id] = StreamState(
                windows=deque(maxlen=self.config.debounce_windows),
                audio=AudioBuffer(self.config.clip_buffer_s),
                last_scored_at=self.clock(),
                last_audio_at=self.clock(),
            )
        return state

    def _snapshot(self, evidence: Evidence, clip: tuple[str, float] | None) -> Published:
        return Published(
            score=evidence.score,
            labels=frozenset(label for label, score in evidence.labels.items() if score >= self.config.label_min_score),
            phrases=frozenset(evidence.phrases),
            transcript=evidence.transcript(),
            clip=clip,
        )

    @staticmethod
    def _envelope(incident: TrackedIncident, cause_id: str, transition: str) -> dict[str, Any]:
        return {
            "stream_id": incident.stream_id,
            "correlation_id": incident.correlation_id,
            "causation_id": cause_id,
            "event_id": derived_event_id(cause_id, transition, incident.incident_id),
        }
