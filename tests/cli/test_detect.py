"""`distress detect` end to end on generated recordings with the shipped classifier and the bundled Whisper model."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile
from typer.testing import CliRunner

from cli.main import app

EXPECTED_KEYS = {"path", "distress", "score", "labels", "transcript", "phrases", "onset_s", "reason", "incidents"}


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
