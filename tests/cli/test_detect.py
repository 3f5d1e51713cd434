"""`distress detect` end to end on generated recordings with the shipped classifier and the bundled Whisper model."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from typer.testing import CliRunner

from cli.main import app

EXPECTED_KEYS = {"path", "distress", "score", "labels", "transcript", "phrases", "onset_s", "reason", "incidents",
                 "heard_s", "declared_s", "warnings"}


def spoken(path: Path, text: str, lead_in_s: float) -> Path:
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is required (tools/debian-packages.txt)"
    raw = path.with_suffix(".raw.wav")
    subprocess.run([espeak, "-v", "en-us", "-s", "150", "-a", "180", "-w", str(raw), text], check=True)
    speech, rate = soundfile.read(raw, dtype="float32")
    audio = np.concatenate([np.zeros(int(lead_in_s * rate), dtype=np.float32), speech,
                            np.zeros(rate, dtype=np.float32)])
    soundfile.write(path, audio, rate)
    return path


def test_detect_reports_each_file_as_one_json_line(tmp_path: Path) -> None:
    help_call = spoken(tmp_path / "help.wav", "Help! Somebody help me! Call the police!", lead_in_s=4.0)
    calm = spoken(tmp_path / "calm.wav", "The meeting starts at ten in the morning.", lead_in_s=1.0)
    room = tmp_path / "room.flac"
    rng = np.random.default_rng(7)
    soundfile.write(room, (0.01 * rng.standard_normal(6 * 16_000)).astype(np.float32), 16_000)
    missing = tmp_path / "missing.wav"

    result = CliRunner().invoke(app, ["detect", str(help_call), str(missing), str(calm), str(room), "--json"])

    assert result.exit_code == 2, result.output  # one file failed, the others still ran
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    by_name = {Path(line["path"]).name: line for line in lines}
    assert set(by_name) == {"help.wav", "missing.wav", "calm.wav", "room.flac"}
    assert "no such file" in by_name["missing.wav"]["error"]

    alarm = by_name["help.wav"]
    assert set(alarm) == EXPECTED_KEYS
    assert alarm["distress"] is True and 0.0 <= alarm["score"] <= 1.0
    assert "help" in alarm["transcript"].lower()
    assert any("help" in hit["phrase"] for hit in alarm["phrases"])
    assert alarm["onset_s"] is not None and 3.0 <= alarm["onset_s"] <= 8.0
    assert alarm["reason"]

    for benign in ("calm.wav", "room.flac"):
        assert by_name[benign]["distress"] is False, by_name[benign]
        assert by_name[benign]["onset_s"] is None and by_name[benign]["phrases"] == []


def quiet_noise(seconds: float) -> np.ndarray:
    return (0.01 * np.random.default_rng(11).standard_normal(int(seconds * 16_000))).astype(np.float32)


def detect_json(*arguments: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """Exit code and each file's JSON line, by file name (acoustics only: these tests are about the audio read)."""
    result = CliRunner().invoke(app, ["detect", *arguments, "--json", "--no-asr"])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, {Path(line["path"]).name: line for line in lines}


def test_a_cut_off_recording_is_answered_for_what_was_heard_with_exit_code_3(tmp_path: Path) -> None:
    full = tmp_path / "full.wav"
    soundfile.write(full, quiet_noise(120.0), 16_000, subtype="PCM_16")
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"  # the header says 120 s, 31 s of samples follow it
    cut.write_bytes(data[: data.index(b"data") + 8 + 31 * 16_000 * 2])
    whole = tmp_path / "whole.flac"
    soundfile.write(whole, quiet_noise(6.0), 16_000)

    code, by_name = detect_json(str(cut), str(whole))

    assert code == 3  # only partly read: the verdict covers 31 s, not the 120 s
    assert set(by_name["cut.wav"]) == EXPECTED_KEYS
    assert (by_name["cut.wav"]["heard_s"], by_name["cut.wav"]["declared_s"]) == (31.0, 120.0)
    assert len(by_name["cut.wav"]["warnings"]) == 1 and "89.0 s never heard" in by_name["cut.wav"]["warnings"][0]
    assert by_name["cut.wav"]["distress"] is False
    assert (by_name["whole.flac"]["heard_s"], by_name["whole.flac"]["declared_s"]) == (6.0, 6.0)
    assert by_name["whole.flac"]["warnings"] == []

    code, _ = detect_json(str(cut), str(tmp_path / "missing.wav"))
    assert code == 2  # a failed file outranks a partly read one

