"""The words the events, alerts, read models and dashboard share about an incident, as ``Literal`` types.

``Literal`` rather than ``StrEnum``: the values stay plain ``str`` at run time, so the wire format of events, the
SQL rows, the HTTP API's JSON and OpenAPI document and the templates are what they were, while mypy checks every
value written in code and the codec refuses any other value on decode.

Sound labels are not here but in ``domain.labels``: a trained model records the ones it knows and a retrained
model may add one without a schema change, so events carry them as ``str``.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: Final[tuple[Severity, ...]] = get_args(Severity)  # lowest first

IncidentStatus = Literal["open", "acknowledged", "resolved", "false_alarm"]
STATUSES: Final[tuple[IncidentStatus, ...]] = get_args(IncidentStatus)
ACTIVE_STATUSES: Final[tuple[IncidentStatus, ...]] = ("open", "acknowledged")
CLOSED_STATUSES: Final[frozenset[IncidentStatus]] = frozenset({"resolved", "false_alarm"})

# What an operator may do to an incident (the commands, the dashboard's buttons).
IncidentAction = Literal["acknowledge", "resolve", "false_alarm", "note"]

# The actor named on decisions the system takes by itself (auto-resolution, a missing-clip note); reserved.
SYSTEM_ACTOR: Final = "system"


def severity_rank(severity: str) -> int:
    """0 for ``low`` up to 3 for ``critical``; a ValueError for any other word."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}") from None
