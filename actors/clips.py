"""Content-addressed evidence clips: ``<root>/ab/cd/<sha256>.wav``, written atomically, stored once.

The address is the SHA-256 of the WAV bytes, so an incident event can reference its clip by hash, a clip written
twice (a re-delivered batch, a restarted actor) lands on the same file, and a tampered file is detectable.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ClipError(Exception):
    """A clip is malformed, missing or does not match its address."""


@dataclass(frozen=True, kw_only=True)
class StoredClip:
    sha256: str
    path: Path
    duration_s: float


class ClipStore:
    """A folder of 16-bit mono WAV clips addressed by their SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ClipError(f"not a lowercase hex SHA-256: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}.wav"

    def put_pcm16(self, pcm16: bytes, sample_rate: int) -> StoredClip:
        """Store little-endian mono PCM16 as WAV; idempotent, and never leaves a partial file behind."""
        if sample_rate <= 0:
            raise ClipError(f"sample_rate must be positive, got {sample_rate}")
        if not pcm16 or len(pcm16) % 2:
            raise ClipError(f"PCM16 must be a non-empty, even number of bytes, got {len(pcm16)}")
        data = _wav_bytes(pcm16, sample_rate)
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.path_for(sha256)
        duration_s = len(pcm16) / 2 / sample_rate
        if path.is_file() and path.stat().st_size == len(data):
            return StoredClip(sha256=sha256, path=path, duration_s=duration_s)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".clip-", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)
        return StoredClip(sha256=sha256, path=path, duration_s=duration_s)

    def read(self, sha256: str) -> bytes:
        """The WAV bytes of a clip, checked against its address."""
        path = self.path_for(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError as error:
            raise ClipError(f"clip {sha256} is not in {self.root}") from error
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ClipError(f"clip {path} does not match its SHA-256: the file was altered")
        return data


def _wav_bytes(pcm16: bytes, sample_rate: int) -> bytes:
    """A canonical WAV container (the stdlib writer is deterministic), so equal audio gives equal hashes."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm16)
    return buffer.getvalue()


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable, not only the file contents."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
