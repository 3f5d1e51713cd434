"""What one incident has gathered (best score, labels, phrases heard, transcripts) and the severity it supports.

Kept apart from the engine so the severity rules can be read, and tested, on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from config.settings import IncidentConfig
from domain.incidents import IncidentRecord
from domain.types import Severity
from events.catalogue import DistressScored, LabelScore, PhraseHit, TranscriptProduced


@dataclass
class Evidence:
    """Everything merged into one incident: best score, best score per label, phrases heard, transcripts."""

    score: float = 0.0
    labels: dict[str, float] = field(default_factory=dict)
    phrases: dict[tuple[str, float], PhraseHit] = field(default_factory=dict)
    transcripts: dict[str, str] = field(default_factory=dict)  # event id -> text, in arrival order

    def add_score(self, scored: DistressScored) -> None:
        self.score = max(self.score, scored.score)
        for item in scored.labels:
            self.labels[item.label] = max(self.labels.get(item.label, 0.0), item.score)
        self.add_phrases(scored.phrases)

    def add_phrases(self, phrases: Iterable[PhraseHit]) -> None:
        for hit in phrases:
            key = (hit.phrase, round(hit.start_s, 1))
            known = self.phrases.get(key)
            if known is None or hit.score > known.score:
                self.phrases[key] = hit

    def add_transcript(self, transcript: TranscriptProduced) -> None:
        if transcript.text.strip():
            self.transcripts.setdefault(transcript.event_id, transcript.text.strip())
        self.add_phrases(transcript.phrases)

    def label_scores(self, limit: int = 8) -> tuple[LabelScore, ...]:
        ranked = sorted(self.labels.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return tuple(LabelScore(label=label, score=score) for label, score in ranked)

    def phrase_hits(self) -> tuple[PhraseHit, ...]:
        return tuple(sorted(self.phrases.values(), key=lambda hit: (hit.start_s, hit.phrase)))

    def transcript(self) -> str:
        return " ".join(self.transcripts.values())

    @classmethod
    def of(cls, record: IncidentRecord) -> Evidence:
        evidence = cls(score=record.score, labels={item.label: item.score for item in record.labels})
        evidence.add_phrases(record.phrases)
        if record.transcript:
            evidence.transcripts["restored"] = record.transcript
        return evidence


def assess_severity(evidence: Evidence, config: IncidentConfig) -> tuple[Severity, str]:
    """The severity the evidence supports and the reason in words (the rules: ``actors.incidents.engine``)."""

    def best(names: Sequence[str]) -> tuple[str, float] | None:
        found = [
            (label, score)
            for label, score in evidence.labels.items()
            if label.lower() in names and score >= config.label_min_score
        ]
        return max(found, key=lambda item: (item[1], item[0])) if found else None

    kinds: list[str] = []
    if evidence.phrases:
        strongest = max(evidence.phrases.values(), key=lambda hit: hit.score)
        kinds.append(f"'{strongest.phrase}' said")
    for group in (config.vocal_labels, config.impact_labels):
        label = best(group)
        if label is not None:
            kinds.append(f"{label[0]} {label[1]:.2f}")
    if len(kinds) >= 2:
        return "critical", " + ".join(kinds)
    if evidence.phrases:
        return "high", f"spoken call for help: {kinds[0]}"
    if evidence.score >= config.high_score:
        return "high", f"score {evidence.score:.2f} >= {config.high_score:.2f}"
    if evidence.score >= config.medium_score:
        return "medium", f"score {evidence.score:.2f} >= {config.medium_score:.2f}"
    return "low", f"score {evidence.score:.2f}"


def describe(evidence: Evidence, config: IncidentConfig) -> str:
    labels = ", ".join(
        f"{item.label} {item.score:.2f}" for item in evidence.label_scores(4) if item.score >= config.label_min_score
    )
    phrases = ", ".join(f"'{hit.phrase}'" for hit in evidence.phrase_hits())
    parts = [f"max score {evidence.score:.2f}", labels, f"said {phrases}" if phrases else ""]
    return "; ".join(part for part in parts if part)
