"""Upcasters: pure functions that lift a stored payload one schema version, chained to reach the current one.

History on Kafka is immutable, so a changed event shape is never migrated in place; readers upcast instead.
An upcaster must not depend on code that may change later: it encodes what the old version meant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


class UpcasterRegistry:
    """Maps (event type, from-version) to the function producing from-version + 1."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        def decorator(function: Upcaster) -> Upcaster:
            key = (event_type, from_version)
            if key in self._steps:
                raise ValueError(f"upcaster for {event_type} v{from_version} registered twice")
            self._steps[key] = function
            return function

        return decorator

    def upcast(self, event_type: str, version: int, target: int, payload: Payload) -> Payload:
        """Apply each step from ``version`` up to ``target``; LookupError names the first missing step."""
        while version < target:
            step = self._steps.get((event_type, version))
            if step is None:
                raise LookupError(f"no upcaster from {event_type} v{version} to v{version + 1}")
            payload = step(dict(payload))
            version += 1
        return payload


UPCASTERS = UpcasterRegistry()


@UPCASTERS.register("FeaturesExtracted", 1)
def _features_extracted_v1_to_v2(payload: Payload) -> Payload:
    """v1 frames were always the log of mel-band power, what distress-cnn reads."""
    payload["log_mel"] = "power"
    return payload


@UPCASTERS.register("StreamStarted", 1)
def _stream_started_v1_to_v2(payload: Payload) -> Payload:
    """v1 had no ``source_kind``; derive it from the v1 source string conventions."""
    source = str(payload.get("source", ""))
    if source in ("-", "stdin"):
        kind = "stdin"
    elif source.startswith("mic:") or source == "mic":
        kind = "microphone"
    elif "://" in source:
        kind = "url"
    else:
        kind = "file"
    payload["source_kind"] = kind
    return payload
