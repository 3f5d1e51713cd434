"""`distress features --json` on a recording only partly read: the seconds that were heard, then a last line with
its ``warnings`` and the seconds heard, and exit code 3; a whole recording gives only its seconds and exit code 0."""

from __future__ import annotations

import json
from pathlib import Path

from cli.errors import EXIT_PARTLY_READ
from tests.support.cli import features
from tests.support.cut_off import DECLARED_S, PRESENT_S, cut_off_wav, whole_wav


def test_a_cut_off_recording_says_in_its_json_what_was_heard_and_exits_3(tmp_path: Path) -> None:
    cut = cut_off_wav(tmp_path / "cut.wav")
    result = features(str(cut), "--json")
    assert result.exit_code == EXIT_PARTLY_READ, result.output
    *seconds, last = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["second"] for line in seconds] == list(range(PRESENT_S))
    assert set(last) == {"warnings", "heard_s", "declared_s"}
    assert (last["heard_s"], last["declared_s"]) == (PRESENT_S, DECLARED_S)
    (warning,) = last["warnings"]
    assert f"{DECLARED_S - PRESENT_S:.1f} s never heard" in warning
    assert result.stderr.splitlines() == [f"warning: {cut}: {warning}"]


def test_a_whole_recording_gives_only_its_seconds_and_exits_0(tmp_path: Path) -> None:
    result = features(str(whole_wav(tmp_path / "whole.wav", 3.5)), "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["second"] for line in lines] == [0, 1, 2, 3]
    assert result.stderr == ""
