"""Helpers the fault tests share: small filesystems that can be filled or made read-only, and event readers.

Faults are real: a tmpfs of a few KiB is a disk that is really full, a private broker is really stopped. Mounting
needs root; CI runs as root, so there a failed mount fails the test instead of skipping it.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from events import Event
from events.kafka.bus import Bus
from events.kafka.log import read_all


def skip_or_fail(reason: str) -> None:
    """Skip where the fault cannot be staged here; fail on CI, which has what every fault needs."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run every fault test)")
    pytest.skip(reason)


@contextmanager
def tiny_filesystem(directory: Path, size: str = "64k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory``, unmounted afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=True)


def fill(directory: Path) -> None:
    """Write until the filesystem says ENOSPC, so that not one more block fits."""
    with (directory / "filler").open("wb", buffering=0) as handle:
        try:
            while handle.write(b"\0" * 512):
                pass
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise


def events_on(bus: Bus, topics: Sequence[str]) -> list[Event]:
    """Every event stored on the topics now, as the broker has them."""
    return [consumed.event for consumed in read_all(bus, topics)]
