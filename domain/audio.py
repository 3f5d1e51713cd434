"""The audio contract of the pipeline: every stage after capture sees 16 kHz mono audio."""

from __future__ import annotations

from typing import Final

SAMPLE_RATE: Final = 16_000
