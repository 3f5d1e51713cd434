"""The domain package: its words on the wire, the fold's first-writer-wins policy, and its layering."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from domain.incidents import IncidentRecord, fold_incidents, incident_id_for, refusal
from domain.types import SEVERITIES, SYSTEM_ACTOR, Severity, severity_rank
from events import InvalidPayload, default_codec
from events.catalogue import (
    IncidentEscalated,
    IncidentEvent,
    IncidentMarkedFalseAlarm,
    IncidentOpened,
    IncidentResolved,
)

CODEC = default_codec()
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
INCIDENT = incident_id_for("door", "trigger-1")


def opened(severity: Severity = "high") -> IncidentOpened:
    return IncidentOpened(
        stream_id="door",
        occurred_at=START,
        incident_id=INCIDENT,
        severity=severity,
        score=0.9,
        reason="scream",
        onset_sample=0,
        onset_at=START,
        labels=(),
        phrases=(),
        transcript="",
        clip_sha256=None,
        clip_duration_s=None,
    )


def later(seconds: int) -> dict[str, Any]:
    return {"stream_id": "door", "occurred_at": START + timedelta(seconds=seconds), "incident_id": INCIDENT}


def fold(*events: IncidentEvent) -> IncidentRecord:
    return fold_incidents(events)[INCIDENT]


def test_a_severity_travels_as_its_word_and_decodes_to_a_plain_string() -> None:
    decoded = CODEC.decode(CODEC.encode(opened()))
    assert isinstance(decoded, IncidentOpened)
    assert type(decoded.severity) is str and decoded.severity == "high"


def test_a_word_outside_the_domain_is_refused_on_decode() -> None:
    document = msgspec.msgpack.decode(CODEC.encode(opened()))
    document["payload"]["severity"] = "severe"
    with pytest.raises(InvalidPayload, match=r"IncidentOpened\.severity"):
        CODEC.decode(msgspec.msgpack.encode(document))


def test_severities_rank_lowest_first() -> None:
    assert [severity_rank(severity) for severity in SEVERITIES] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="unknown severity"):
        severity_rank("unknown")


def test_the_first_close_in_the_log_wins() -> None:
    auto = IncidentResolved(**later(60), actor=SYSTEM_ACTOR, reason="quiet for 60 s", note="")
    operator = IncidentResolved(**later(61), actor="ana", reason="resolved by operator", note="")
    record = fold(opened(), auto, operator)
    assert (record.status, record.closed_by) == ("resolved", SYSTEM_ACTOR)
    assert refusal(record, "resolve") is not None


def test_a_false_alarm_may_follow_an_auto_resolution_but_nothing_follows_it() -> None:
    auto = IncidentResolved(**later(60), actor=SYSTEM_ACTOR, reason="quiet for 60 s", note="")
    verdict = IncidentMarkedFalseAlarm(**later(90), actor="ana", note="a door slam")
    rise = IncidentEscalated(**later(91), from_severity="high", to_severity="critical", reason="late")
    record = fold(opened(), auto, verdict, rise)
    assert (record.status, record.closed_by, record.severity) == ("false_alarm", "ana", "high")


def _project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    packages = {"actors", "cli", "config", "domain", "events", "frontend", "models", "projections"}
    return {name for name in names if name.split(".")[0] in packages}


def test_the_layering_rule_of_the_domain_package() -> None:
    root = Path(__file__).parents[2] / "domain"
    assert _project_imports(root / "types.py") == set()
    assert _project_imports(root / "audio.py") == set()
    assert {name.split(".")[0] for name in _project_imports(root / "incidents.py")} <= {"domain", "events"}
    assert not _project_imports(root / "__init__.py")
