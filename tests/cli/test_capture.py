"""`distress capture` as a user runs it: several sources at once, stdin, bad input, no broker, Ctrl-C."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.capture import CaptureUsageError, default_stream_id, stream_ids_for
from cli.errors import EXIT_PARTLY_READ
from cli.main import app
from config import Settings
from config.redaction import redact_url
from events.catalogue import AudioChunkCaptured, StreamEnded, StreamFailed, StreamStarted
from tests.conftest import REPO_ROOT, free_port
from tests.support.audio import (
    ServedAudio,
    captured_events,
    encode_with_ffmpeg,
    http_audio_server,
    tone,
    unknown_codec_wav,
    write_audio,
)
from tests.support.cut_off import DECLARED_S, PRESENT_S, cut_off_wav, whole_wav

FAST_RETRY = json.dumps(
    {
        "reconnect_max_attempts": 2,
        "reconnect_base_delay_s": 0.01,
        "reconnect_max_delay_s": 0.02,
        "connect_timeout_s": 5,
        "read_timeout_s": 5,
    }
)


def capture_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {
        "DISTRESS_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "DISTRESS_TOPIC_PREFIX": settings.topic_prefix,
        "DISTRESS_DATA_DIR": str(tmp_path / "state"),
        "DISTRESS_CAPTURE": FAST_RETRY,
    }


def distress(env: dict[str, str], *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        timeout=180,
        check=False,
    )


def test_good_streams_finish_while_bad_sources_fail_with_exit_code_2(kafka_settings: Settings, tmp_path: Path) -> None:
    kafka_settings.ensure_topics()
    good_wav = write_audio(tmp_path / "hall.wav", tone(1.5, 48000, (440.0, 550.0)), 48000)
    good_m4a = encode_with_ffmpeg(write_audio(tmp_path / "src.wav", tone(1.0, 44100), 44100), tmp_path / "yard.m4a")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(bytes(range(256)) * 8)
    empty = tmp_path / "empty.ogg"
    empty.write_bytes(b"")
    codec = unknown_codec_wav(tmp_path / "codec.wav")
    with http_audio_server(ServedAudio(b"")) as base:
        # the server is gone after this block, so its port refuses connections; the URL carries secrets
        unreachable = base.replace("http://", "http://operator:hunter2@") + "/gone.mp3?key=s3cret"
    bad = {
        "missing": (str(tmp_path / "missing.wav"), "no such file"),
        "folder": (str(tmp_path), "is a directory"),
        "corrupt": (str(corrupt), "unreadable or corrupt audio"),
        "empty": (str(empty), "zero-length audio"),
        "codec": (str(codec), "unsupported codec"),
        "gone": (unreachable, "gave up after 2 failed attempt(s)"),
    }
    sources = [str(good_wav), *(spec for spec, _ in bad.values()), str(good_m4a)]
    ids = ["hall", *bad, "yard"]
    args = [arg for stream_id in ids for arg in ("--stream-id", stream_id)]
    result = distress(capture_env(kafka_settings, tmp_path), "capture", *sources, *args, "--json")

    assert result.returncode == 2, result.stderr.decode()
    output = json.loads(result.stdout)
    reports = {report["stream_id"]: report for report in output["streams"]}
    assert output["summary"]["ended"] == 2 and output["summary"]["failed"] == len(bad)
    assert reports["hall"]["outcome"] == "ended" and reports["hall"]["samples"] == 24000
    assert reports["yard"]["outcome"] == "ended" and reports["yard"]["chunks"] >= 1
    stderr = result.stderr.decode()
    for stream_id, (spec, reason) in bad.items():
        assert reports[stream_id]["outcome"] == "failed"
        assert reason in reports[stream_id]["reason"]
        assert f"error: stream {stream_id}: " in stderr and reason in stderr
        assert reports[stream_id]["reason"].startswith(redact_url(spec) + ": ")  # names the source
    everything_shown = result.stdout.decode() + stderr  # reports, errors and the JSON logs
    assert "hunter2" not in everything_shown and "s3cret" not in everything_shown

    received = captured_events(kafka_settings.bus())
    failed = {c.event.stream_id: c.event for c in received if isinstance(c.event, StreamFailed)}
    ended = {c.event.stream_id: c.event for c in received if isinstance(c.event, StreamEnded)}
    assert set(failed) == set(bad) and set(ended) == {"hall", "yard"}
    assert ended["hall"].samples == 24000
    assert all(reason in failed[stream_id].reason for stream_id, (_, reason) in bad.items())
    assert failed["gone"].source == redact_url(unreachable) and "hunter2" not in failed["gone"].reason


def test_a_cut_off_recording_is_captured_for_what_was_heard_with_exit_code_3(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    kafka_settings.ensure_topics()
    cut, whole = cut_off_wav(tmp_path / "cut.wav"), whole_wav(tmp_path / "whole.wav", 2.0)
    env = capture_env(kafka_settings, tmp_path)
    result = distress(env, "capture", str(cut), str(whole), "--json")

    assert result.returncode == EXIT_PARTLY_READ, result.stderr.decode()
    output = json.loads(result.stdout)
    reports = {report["stream_id"]: report for report in output["streams"]}
    assert reports["cut"]["outcome"] == "ended" and reports["cut"]["heard_seconds"] == PRESENT_S
    assert reports["cut"]["declared_seconds"] == DECLARED_S
    (warning,) = reports["cut"]["warnings"]
    assert f"{DECLARED_S - PRESENT_S:.1f} s never heard" in warning
    assert (reports["whole"]["warnings"], reports["whole"]["heard_seconds"]) == ([], 2.0)
    assert output["summary"]["partly_read"] == 1 and output["summary"]["failed"] == 0
    assert f"warning: stream cut: {warning}" in result.stderr.decode().splitlines()

    whole_only = distress(env, "capture", str(whole), "--stream-id", "again", "--json")
    assert whole_only.returncode == 0, whole_only.stderr.decode()
    assert json.loads(whole_only.stdout)["summary"]["partly_read"] == 0


def test_raw_pcm_on_stdin_is_captured(kafka_settings: Settings, tmp_path: Path) -> None:
    pcm = tone(1.25, 8000, (300.0, 400.0)).astype("<f4").tobytes()  # 8 kHz stereo float: 20000 samples at 16 kHz
    result = distress(
        capture_env(kafka_settings, tmp_path),
        "capture",
        "-",
        "--stream-id",
        "door",
        "--chunk-seconds",
        "0.5",
        "--stdin-rate",
        "8000",
        "--stdin-channels",
        "2",
        "--stdin-format",
        "f32le",
        "--json",
        stdin=pcm,
    )
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)["streams"][0]
    assert (report["stream_id"], report["source_kind"], report["chunks"], report["samples"]) == (
        "door",
        "stdin",
        3,
        20000,
    )
    received = captured_events(kafka_settings.bus())
    chunks = sorted((c.event for c in received if isinstance(c.event, AudioChunkCaptured)), key=lambda e: e.sequence)
    assert [len(chunk.pcm16) // 2 for chunk in chunks] == [8000, 8000, 4000]
    started = next(c.event for c in received if isinstance(c.event, StreamStarted))
    assert (started.source_sample_rate, started.source_channels) == (8000, 2)


def test_interrupt_ends_a_live_capture_cleanly(kafka_settings: Settings, tmp_path: Path) -> None:
    kafka_settings.ensure_topics()
    stdout_path, stderr_path = tmp_path / "stdout", tmp_path / "stderr"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:  # the child holds its own copies
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "capture", "-", "--stream-id", "live", "--chunk-seconds", "0.25", "--json"],
            cwd=REPO_ROOT,
            env={**os.environ, **capture_env(kafka_settings, tmp_path)},
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=stderr,
        )
    assert process.stdin is not None
    process.stdin.write((tone(1.0, 16000)[:, 0] * 32767).astype("<i2").tobytes())
    process.stdin.flush()
    bus = kafka_settings.bus()
    with bus.producer() as producer:
        consumer = bus.consumer(
            group_id=f"read-{uuid.uuid4()}", producer=producer, topics=[bus.catalogue.audio_chunks.name]
        )
        deadline = time.monotonic() + 60
        while not consumer.consume(max_messages=10, timeout_s=0.5) and time.monotonic() < deadline:
            pass  # wait until the capture is publishing
        consumer.close()
    process.send_signal(signal.SIGINT)
    returncode = process.wait(timeout=60)  # stdin stays open and silent: the signal alone ends the capture
    process.stdin.close()
    assert returncode == 0, stderr_path.read_text()
    report = json.loads(stdout_path.read_text())["streams"][0]
    assert report["reason"] == "stopped" and report["samples"] == 16000
    ended = [c.event for c in captured_events(bus) if isinstance(c.event, StreamEnded)]
    assert [(event.reason, event.samples) for event in ended] == [("stopped", 16000)]


def run_in_process(tmp_path: Path, *args: str) -> tuple[int, str]:
    """`distress capture ARGS` in-process through the entry point (these cases never reach the capture)."""
    env = {"DISTRESS_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", "DISTRESS_DATA_DIR": str(tmp_path)}
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        result = CliRunner().invoke(app, ["capture", *args], env=env)
    finally:  # the command configures logging for its own run
        root.handlers[:], root.level = handlers, level
    return result.exit_code, result.stderr


def test_an_unreachable_broker_tells_the_user_to_start_it(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "a.wav", tone(0.2, 16000), 16000)
    code, stderr = run_in_process(tmp_path, str(path))
    assert code == 1
    assert "cannot reach Kafka" in stderr and "distress broker up" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a.wav", "b.wav", "--stream-id", "one"], "--stream-id given 1 time(s) for 2 source(s)"),
        (["a.wav", "--stream-id", "bad id!"], "--stream-id 'bad id!' is invalid"),
        (["a.wav", "--chunk-seconds", "0"], "--chunk-seconds must be in (0, 10]"),
        (["a.wav", "--chunk-seconds", "11"], "--chunk-seconds must be in (0, 10]"),
        (["ftp://host/a.wav"], "unsupported URL scheme 'ftp'"),
        (["-", "-"], "'-' (stdin) can be captured only once"),
        (["-", "--stdin-format", "u8"], "unknown raw PCM sample format 'u8'"),
        (["-", "--stdin-channels", "0"], "raw PCM channels must be between 1 and 32"),
    ],
)
def test_bad_arguments_exit_with_code_2_before_touching_kafka(tmp_path: Path, args: list[str], message: str) -> None:
    code, stderr = run_in_process(tmp_path, *args)
    assert code == 2
    assert message in stderr and "broker" not in stderr


def test_default_stream_ids_are_readable_valid_and_unique() -> None:
    specs = [
        "/data/Ward 3.wav",
        "/other/Ward 3.wav",
        "rtsp://admin:pw@10.0.0.5:554/live",
        "mic",
        "mic:1",
        "-",
        "/x/.hidden.flac",
    ]
    ids = stream_ids_for(specs, [])
    assert ids == ["Ward-3", "Ward-3-2", "10.0.0.5-554", "mic", "mic-1", "stdin", "hidden"]
    assert default_stream_id("https://radio.example/stream.mp3") == "radio.example"
    assert stream_ids_for(["a.wav"], ["lobby"]) == ["lobby"]
    with pytest.raises(CaptureUsageError, match="must be unique"):
        stream_ids_for(["a.wav", "b.wav"], ["x", "x"])
