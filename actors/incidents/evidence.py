"""What one incident has gathered (best score, labels, phrases heard, transcripts) and the severity it supports.

Kept apart from the engine so the severity rules can be read, and tested, on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from config.settings import IncidentConfig
from domain.incidents import IncidentRecord
from domain.types import Severity, severity_rank
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
    by_score: tuple[Severity, str]
    if len(kinds) >= 2:
        by_score = "critical", " + ".join(kinds)
    elif evidence.phrases:
        by_score = "high", f"spoken call for help: {kinds[0]}"
    elif evidence.score >= config.high_score:
        by_score = "high", f"score {evidence.score:.2f} >= {config.high_score:.2f}"
    elif evidence.score >= config.medium_score:
        by_score = "medium", f"score {evidence.score:.2f} >= {config.medium_score:.2f}"
    else:
        by_score = "low", f"score {evidence.score:.2f}"
    # A label grave on its own (a gunshot, an alarm) sets a floor: the graver of the two, with its reason.
    by_label = [
        (config.label_severities[label], f"{label} {score:.2f}")
        for label, score in sorted(evidence.labels.items())
        if label in config.label_severities and score >= config.label_min_score
    ]
    return max([by_score, *by_label], key=lambda pair: severity_rank(pair[0]))


def describe(evidence: Evidence, config: IncidentConfig) -> str:
    labels = ", ".join(
        f"{item.label} {item.score:.2f}" for item in evidence.label_scores(4) if item.score >= config.label_min_score
    )
    phrases = ", ".join(f"'{hit.phrase}'" for hit in evidence.phrase_hits())
    parts = [f"max score {evidence.score:.2f}", labels, f"said {phrases}" if phrases else ""]
    return "; ".join(part for part in parts if part)
