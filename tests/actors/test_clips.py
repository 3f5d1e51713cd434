"""The content-addressed clip store: layout, idempotence, no partial files, tamper detection, bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from actors.clips import ClipError, ClipStore

PCM = bytes(range(256)) * 64


def test_a_clip_is_stored_once_under_its_hash(tmp_path: Path) -> None:
    store = ClipStore(tmp_path)
    first = store.put_pcm16(PCM, 16_000)
    mtime = first.path.stat().st_mtime_ns
    second = store.put_pcm16(PCM, 16_000)
    assert first == second and first.path.stat().st_mtime_ns == mtime
    assert first.path == tmp_path / first.sha256[:2] / first.sha256[2:4] / f"{first.sha256}.wav"
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == first.sha256
    assert first.duration_s == pytest.approx(len(PCM) / 2 / 16_000)
    assert [path.name for path in tmp_path.rglob("*") if path.is_file()] == [f"{first.sha256}.wav"]
    assert store.put_pcm16(PCM, 8_000).sha256 != first.sha256  # the rate is part of the content


def test_a_truncated_leftover_is_replaced_and_a_tampered_clip_is_detected(tmp_path: Path) -> None:
    store = ClipStore(tmp_path)
    clip = store.put_pcm16(PCM, 16_000)
    clip.path.write_bytes(clip.path.read_bytes()[:100])
    assert store.put_pcm16(PCM, 16_000).path.stat().st_size > 100
    assert store.read(clip.sha256).startswith(b"RIFF")
    clip.path.write_bytes(clip.path.read_bytes().replace(PCM[:64], bytes(64)))
    with pytest.raises(ClipError, match="does not match its SHA-256"):
        store.read(clip.sha256)


def test_bad_input_is_refused_with_the_reason(tmp_path: Path) -> None:
    store = ClipStore(tmp_path)
    with pytest.raises(ClipError, match="even number of bytes"):
        store.put_pcm16(b"\x01\x02\x03", 16_000)
    with pytest.raises(ClipError, match="sample_rate"):
        store.put_pcm16(PCM, 0)
    with pytest.raises(ClipError, match="not a lowercase hex SHA-256"):
        store.path_for("../../etc/passwd")
    with pytest.raises(ClipError, match="is not in"):
        store.read("0" * 64)
