"""Audio sources on real inputs: files in every supported format, a real HTTP server, raw PCM streams."""

from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from actors.capture.blocks import AudioBlock, AudioSource, SourceError
from actors.capture.files import FileSource
from actors.capture.microphone import MicrophoneSource
from actors.capture.network import ReconnectPolicy, UrlSource
from actors.capture.raw_pcm import RawPcmFormat, RawPcmSource
from actors.capture.sources import SourceOptions, open_source
from tests.conftest import REPO_ROOT
from tests.support.audio import (
    ServedAudio,
    encode_with_ffmpeg,
    http_audio_server,
    tone,
    unknown_codec_wav,
    write_audio,
)

FAST_RETRY = ReconnectPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.02)


def read_all(source: AudioSource) -> list[AudioBlock]:
    return list(source.blocks(threading.Event()))


def joined(blocks: list[AudioBlock]) -> np.ndarray:
    return np.concatenate([block.samples for block in blocks])


# ------------------------------------------------------------------------------------------------- files


@pytest.mark.parametrize(("suffix", "rate"), [(".wav", 44100), (".flac", 48000), (".wav", 16000)])
def test_lossless_files_yield_every_frame_at_the_source_rate(tmp_path: Path, suffix: str, rate: int) -> None:
    original = tone(1.3, rate, (440.0, 660.0))
    path = write_audio(tmp_path / f"stereo{suffix}", original, rate, subtype="PCM_16")
    blocks = read_all(FileSource(path))
    assert {block.sample_rate for block in blocks} == {rate}
    samples = joined(blocks)
    assert samples.shape == original.shape
    assert np.abs(samples - original).max() <= 1 / 32768  # PCM16 quantisation only


@pytest.mark.parametrize("suffix", [".ogg", ".mp3", ".m4a"])
def test_lossy_files_decode_to_the_same_tone(tmp_path: Path, suffix: str) -> None:
    rate = 44100
    original = tone(1.0, rate, (440.0, 440.0))
    if suffix == ".ogg":  # libsndfile writes Ogg Vorbis itself
        path = write_audio(tmp_path / "a.ogg", original, rate)
    else:
        path = encode_with_ffmpeg(write_audio(tmp_path / "source.wav", original, rate), tmp_path / f"a{suffix}")
    blocks = read_all(FileSource(path))
    samples = joined(blocks)
    assert blocks[0].sample_rate == rate and samples.shape[1] == 2
    assert abs(samples.shape[0] - rate) <= 2 * 1024  # encoder priming/padding, at most two codec frames
    spectrum = np.abs(np.fft.rfft(samples[:, 0]))
    assert np.argmax(spectrum) * rate / samples.shape[0] == pytest.approx(440.0, abs=2.0)


def test_m4a_is_read_through_ffmpeg_when_libsndfile_cannot(tmp_path: Path) -> None:
    wav = write_audio(tmp_path / "source.wav", tone(0.5, 48000), 48000)
    blocks = read_all(FileSource(encode_with_ffmpeg(wav, tmp_path / "voice.m4a")))
    assert blocks[0].sample_rate == 48000 and blocks[0].channels == 1
    assert all(block.samples.dtype == np.float32 for block in blocks)


def test_float_wav_keeps_non_finite_values_for_the_normaliser_to_count(tmp_path: Path) -> None:
    samples = tone(0.2, 16000)
    samples[[5, 100], 0] = [np.nan, np.inf]
    path = write_audio(tmp_path / "nan.wav", samples, 16000, subtype="FLOAT")
    read = joined(read_all(FileSource(path)))
    assert np.isnan(read[5, 0]) and np.isposinf(read[100, 0])


def _empty_wav(path: Path) -> Path:
    return write_audio(path, np.zeros((0, 1), dtype=np.float32), 16000)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda tmp: tmp / "missing.wav", "no such file"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: (tmp / "empty.wav", (tmp / "empty.wav").write_bytes(b""))[0], "zero-length audio"),
        (lambda tmp: _empty_wav(tmp / "silent.wav"), "zero-length audio"),
        (
            lambda tmp: (tmp / "junk.wav", (tmp / "junk.wav").write_bytes(bytes(range(256)) * 20))[0],
            "unreadable or corrupt audio",
        ),
        (lambda tmp: unknown_codec_wav(tmp / "codec.wav"), "unsupported codec"),
    ],
    ids=["missing", "directory", "empty-file", "zero-frames", "corrupt", "unsupported-codec"],
)
def test_bad_files_raise_an_error_naming_the_file_and_the_reason(tmp_path: Path, make: object, reason: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(SourceError) as caught:
        read_all(FileSource(path))
    assert caught.value.source == str(path)
    assert reason in caught.value.reason
    assert str(path) in str(caught.value)


def test_stop_ends_a_file_early(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "long.wav", tone(5.0, 16000), 16000)
    stop = threading.Event()
    blocks = []
    for block in FileSource(path).blocks(stop):
        blocks.append(block)
        stop.set()
    assert len(blocks) == 1


# ---------------------------------------------------------------------------------------- partly read files


def cut_at(path: Path, fraction: float) -> Path:
    """A copy of ``path`` holding only its first ``fraction`` of bytes: a recording cut off mid-stream."""
    data = path.read_bytes()
    cut = path.with_name(f"cut-{path.name}")
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


def garbled_middle(path: Path, fraction: float = 0.1) -> Path:
    """A copy of ``path`` with ``fraction`` of its bytes from the middle on replaced by (seeded) noise."""
    data = bytearray(path.read_bytes())
    start, length = len(data) // 2, int(len(data) * fraction)
    data[start : start + length] = np.random.default_rng(3).integers(0, 256, length, dtype=np.uint8).tobytes()
    garbled = path.with_name(f"garbled-{path.name}")
    garbled.write_bytes(bytes(data))
    return garbled


def heard_seconds(blocks: list[AudioBlock]) -> float:
    return sum(block.frames / block.sample_rate for block in blocks)


def test_a_wav_cut_short_of_its_header_is_read_to_its_end_and_says_how_much_is_missing(tmp_path: Path) -> None:
    rate = 16000
    path = write_audio(tmp_path / "long.wav", tone(120.0, rate, amplitude=0.1), rate, subtype="PCM_16")
    data = path.read_bytes()
    cut = tmp_path / "cut.wav"  # the header still says 120 s; 31 s of samples follow it
    cut.write_bytes(data[: data.index(b"data") + 8 + 31 * rate * 2])
    source = FileSource(cut)
    blocks = read_all(source)
    assert sum(block.frames for block in blocks) == 31 * rate
    assert source.declared_seconds == 120.0
    assert len(source.warnings) == 1 and "only 31.0 s of the 120.0 s the file declares" in source.warnings[0]


@pytest.mark.parametrize(
    ("suffix", "says"), [(".mp3", "of the 20.0 s the file declares"), (".ogg", "without its end-of-stream page")]
)
def test_a_lossy_file_cut_off_mid_stream_keeps_what_was_heard_and_warns(tmp_path: Path, suffix: str, says: str) -> None:
    original = write_audio(tmp_path / "long.wav", tone(20.0, 44100), 44100)
    path = encode_with_ffmpeg(original, tmp_path / f"long{suffix}")
    source = FileSource(cut_at(path, 0.25))
    heard = heard_seconds(read_all(source))
    assert 2.0 < heard < 8.0  # about a quarter (Vorbis spends its bits unevenly on a tone)
    assert len(source.warnings) == 1 and says in source.warnings[0], source.warnings


@pytest.mark.parametrize(("suffix", "damage"), [(".flac", "cut"), (".flac", "garbled")])
def test_a_decoder_error_part_way_keeps_the_audio_before_it_and_warns(tmp_path: Path, suffix: str, damage: str) -> None:
    original = write_audio(tmp_path / "long.wav", tone(20.0, 44100), 44100)
    path = encode_with_ffmpeg(original, tmp_path / f"long{suffix}")
    source = FileSource(cut_at(path, 0.25) if damage == "cut" else garbled_middle(path))
    heard = heard_seconds(read_all(source))
    assert 4.0 < heard < 12.0  # up to the damage (a quarter in, or the middle)
    assert source.declared_seconds == pytest.approx(20.0, abs=0.1)
    assert len(source.warnings) == 1
    assert f"decoding stopped after {heard:.1f} s of the 20.0 s the file declares" in source.warnings[0]


@pytest.mark.parametrize("suffix", [".m4a", ".mp3"])
def test_damaged_packets_are_skipped_counted_and_the_rest_still_heard(tmp_path: Path, suffix: str) -> None:
    """FFmpeg refuses a damaged packet; decoding goes on after it (libmpg123, which libsndfile used for MP3,
    wrote a line to stderr for each one instead), and the warning says how much was never heard."""
    original = write_audio(tmp_path / "long.wav", tone(20.0, 44100), 44100)
    source = FileSource(garbled_middle(encode_with_ffmpeg(original, tmp_path / f"long{suffix}")))
    heard = heard_seconds(read_all(source))
    assert 12.0 < heard < 20.0  # past the damage in the middle, less than the whole
    # MP3's demuxer also drops the garbage between frames, which the file's declared length then shows as missing
    assert all("never heard" in warning for warning in source.warnings), source.warnings
    skipped = re.fullmatch(r"(\d+) damaged packet\(s\) skipped, ([\d.]+) s never heard", source.warnings[0])
    assert skipped is not None, source.warnings
    assert int(skipped[1]) >= 1 and float(skipped[2]) > 0


def mp3_without_frame_count(path: Path, target: Path) -> Path:
    """An MP3 without a Xing header but with 30 kB of ID3 tag: libsndfile's length estimate counts the tag."""
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(path),
            "-write_xing",
            "0",
            "-metadata",
            f"comment={'x' * 30000}",
            str(target),
        ],
        check=True,
        timeout=60,
    )
    return target


@pytest.mark.parametrize("seconds", [0.3, 3.0])
@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", "-noxing.mp3"])
def test_complete_files_carry_no_warning(tmp_path: Path, suffix: str, seconds: float) -> None:
    original = write_audio(tmp_path / "source.wav", tone(seconds, 44100), 44100)
    path = (
        mp3_without_frame_count(original, tmp_path / "a.mp3")
        if suffix == "-noxing.mp3"
        else encode_with_ffmpeg(original, tmp_path / f"a{suffix}")
    )
    source = FileSource(path)
    heard = heard_seconds(read_all(source))
    assert source.warnings == []
    if suffix in (".aac", "-noxing.mp3"):  # lengths only estimated from the bit rate: not trusted
        assert source.declared_seconds is None
    else:
        assert source.declared_seconds == pytest.approx(heard, abs=0.05)


# ----------------------------------------------------------------------------------------------- network


def test_http_stream_is_read_like_the_file(tmp_path: Path) -> None:
    original = tone(1.0, 44100, (440.0, 660.0))
    payload = write_audio(tmp_path / "a.wav", original, 44100).read_bytes()
    with http_audio_server(ServedAudio(payload)) as base:
        source = UrlSource(f"{base}/live.wav", reconnect=FAST_RETRY)
        samples = joined(read_all(source))
    assert samples.shape == original.shape
    assert source.reconnects == 0


def test_dropped_http_connection_is_reconnected_and_marked_discontinuous(tmp_path: Path) -> None:
    original = tone(1.0, 16000)
    payload = write_audio(tmp_path / "a.wav", original, 16000).read_bytes()
    served = ServedAudio(payload, drop_first=1, drop_after_bytes=len(payload) // 2)
    with http_audio_server(served) as base:
        source = UrlSource(f"{base}/radio", reconnect=FAST_RETRY)
        blocks = read_all(source)
    assert len(served.requests) == 2 and source.reconnects == 1
    restarts = [index for index, block in enumerate(blocks) if block.discontinuity]
    assert len(restarts) == 1
    before, after = joined(blocks[: restarts[0]]), joined(blocks[restarts[0] :])
    assert 0 < before.shape[0] < original.shape[0]  # the first connection delivered part of the audio
    assert after.shape == original.shape  # the second delivered all of it
    np.testing.assert_allclose(after, original, atol=1 / 32768)


def test_http_not_found_fails_at_once_without_retrying() -> None:
    served = ServedAudio(b"", error_status=404)
    with http_audio_server(served) as base, pytest.raises(SourceError) as caught:
        read_all(UrlSource(f"{base}/nothing.mp3", reconnect=FAST_RETRY))
    assert len(served.requests) == 1
    assert "Not Found" in caught.value.reason or "404" in caught.value.reason


def test_unreachable_url_gives_up_after_the_configured_attempts_and_hides_credentials() -> None:
    with http_audio_server(ServedAudio(b"")) as base:
        closed_port_url = base  # the server is shut down when the block ends: its port now refuses
    url = closed_port_url.replace("http://", "http://admin:hunter2@") + "/cam?token=abc"
    with pytest.raises(SourceError) as caught:
        read_all(UrlSource(url, reconnect=FAST_RETRY))
    message = str(caught.value)
    assert "gave up after 3 failed attempt(s)" in message and "refused" in message.lower()
    assert "hunter2" not in message and "token=abc" not in message and "admin" not in message
    assert caught.value.source.startswith("http://***@127.0.0.1:")


SYSTEM_PYTHON = Path("/usr/bin/python3")
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")


def _gst_rtsp_server_available() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return (
        SYSTEM_PYTHON.exists()
        and subprocess.run([str(SYSTEM_PYTHON), "-c", probe], capture_output=True, check=False).returncode == 0
    )


@pytest.fixture
def rtsp_url() -> Iterator[str]:
    """A real RTSP server (gst-rtsp-server) serving one second of a 440 Hz stereo tone per client."""
    if not _gst_rtsp_server_available():
        pytest.skip(
            "needs Debian packages python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
            "gstreamer1.0-plugins-good"
        )
    server = subprocess.Popen([str(SYSTEM_PYTHON), str(RTSP_SERVER), "1.0"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        yield f"rtsp://127.0.0.1:{port}/audio"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_rtsp_stream_is_read_from_a_real_rtsp_server(rtsp_url: str) -> None:
    source = UrlSource(rtsp_url, reconnect=FAST_RETRY)
    blocks = read_all(source)
    samples = joined(blocks)
    assert {block.sample_rate for block in blocks} == {44100} and samples.shape == (44100, 2)
    spectrum = np.abs(np.fft.rfft(samples[:, 0]))
    assert np.argmax(spectrum) * 44100 / samples.shape[0] == pytest.approx(440.0, abs=2.0)
    assert source.reconnects == 0


def test_backoff_grows_exponentially_within_jitter_bounds_and_is_capped() -> None:
    policy = ReconnectPolicy(max_attempts=10, base_delay_s=0.5, max_delay_s=4.0)
    rng = random.Random(7)
    for failures, step in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        delays = [policy.delay_s(failures, rng) for _ in range(200)]
        assert min(delays) >= step / 2 and max(delays) <= step
        assert max(delays) - min(delays) > step / 4  # jittered, not constant


def test_reconnect_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        ReconnectPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base_delay_s"):
        ReconnectPolicy(base_delay_s=5.0, max_delay_s=1.0)


# ----------------------------------------------------------------------------------------------- raw PCM


def test_raw_s16le_stdin_is_scaled_to_float() -> None:
    values = np.array([0, 16384, -32768, 32767, -1], dtype="<i2")
    blocks = read_all(RawPcmSource(stream=io.BytesIO(values.tobytes())))
    np.testing.assert_array_equal(joined(blocks)[:, 0], values.astype(np.float32) / 32768)
    assert blocks[0].sample_rate == 16000


def test_raw_stereo_float_pcm_with_a_partial_trailing_frame() -> None:
    frames = np.array([[0.25, -0.5], [1.0, 0.0], [np.nan, 0.1]], dtype="<f4")
    data = frames.tobytes() + b"\x00\x01\x02"  # three stray bytes: not a whole frame, dropped
    source = RawPcmSource(
        stream=io.BytesIO(data), pcm_format=RawPcmFormat(sample_rate=8000, channels=2, sample_format="f32le")
    )
    blocks = read_all(source)
    np.testing.assert_array_equal(joined(blocks), frames)
    assert blocks[0].sample_rate == 8000
    assert source.warnings == ["the input ended inside a PCM frame: its last 3 byte(s) were dropped"]


def test_raw_pcm_blocks_arrive_as_the_writer_writes() -> None:
    """A pipe that stays open: each write becomes available at once (no waiting for a full buffer)."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb")
    source = RawPcmSource(stream=reader)
    blocks = source.blocks(threading.Event())
    os.write(write_fd, np.arange(10, dtype="<i2").tobytes())
    first = next(blocks)  # would block forever if the source waited for more bytes
    assert first.frames == 10
    os.close(write_fd)
    assert list(blocks) == []
    reader.close()


def test_empty_stdin_is_zero_length_audio() -> None:
    with pytest.raises(SourceError, match="stdin: zero-length audio"):
        read_all(RawPcmSource(stream=io.BytesIO(b"\x01")))


def test_raw_pcm_format_rejects_unknown_layouts() -> None:
    with pytest.raises(ValueError, match="unknown raw PCM sample format 'u8'"):
        RawPcmFormat(sample_format="u8")
    with pytest.raises(ValueError, match="channels"):
        RawPcmFormat(channels=0)
    with pytest.raises(ValueError, match="sample rate"):
        RawPcmFormat(sample_rate=0)


# -------------------------------------------------------------------------------------------- microphone


def _has_input_device() -> bool:
    try:
        import sounddevice

        sounddevice.query_devices(kind="input")
    except Exception:  # no PortAudio, or no input device: both mean "no microphone"
        return False
    return True


@pytest.mark.skipif(_has_input_device(), reason="this machine has a microphone")
def test_missing_microphone_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match=r"^mic: no microphone found: "):
        read_all(MicrophoneSource())
    with pytest.raises(SourceError, match=r"^mic:7: no microphone found: "):
        read_all(MicrophoneSource("7"))


ALSA_CONF = Path("/usr/share/alsa/alsa.conf")
# An ALSA capture device that plays a raw file: a "file" PCM over the "null" device, behind "plug" so any
# format PortAudio asks for is converted from the file's S16_LE 48 kHz stereo. The hint makes it listed.
TEST_MICROPHONE_CONF = """
pcm.testmic_file {{ type file slave.pcm "null" file "/dev/null" infile "{infile}" format "raw" }}
pcm.testmic {{
    type plug
    slave {{ pcm "testmic_file" format S16_LE rate 48000 channels 2 }}
    hint {{ show on description "Test microphone" }}
}}
"""
READ_ONE_SECOND = """
import json, threading
import numpy as np
from actors.capture.microphone import MicrophoneSource
blocks = []
for block in MicrophoneSource("testmic").blocks(threading.Event()):
    blocks.append(block)
    if sum(b.frames for b in blocks) >= block.sample_rate:
        break
samples = np.concatenate([b.samples for b in blocks])
peak_bin = int(np.argmax(np.abs(np.fft.rfft(samples[:, 0]))))
print(json.dumps({"rate": blocks[0].sample_rate, "channels": blocks[0].channels,
                  "peak_hz": peak_bin * blocks[0].sample_rate / samples.shape[0],
                  "level": float(np.abs(samples).max())}))
"""


def test_microphone_capture_through_alsa_and_portaudio(tmp_path: Path) -> None:
    """A real capture device (ALSA file plugin playing a 440 Hz tone) read through PortAudio."""
    if not ALSA_CONF.exists():
        pytest.skip("needs the ALSA configuration (Debian package libasound2-data, pulled in by libportaudio2)")
    infile = tmp_path / "tone.raw"
    infile.write_bytes((tone(3.0, 48000, (440.0, 440.0)) * 32767).astype("<i2").tobytes())
    config = tmp_path / "asoundrc"
    config.write_text(TEST_MICROPHONE_CONF.format(infile=infile))
    env = {**os.environ, "ALSA_CONFIG_PATH": f"{ALSA_CONF}:{config}", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", READ_ONE_SECOND], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if "PortAudio library not found" in result.stderr:
        pytest.skip("needs PortAudio (Debian package libportaudio2)")
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    assert (measured["rate"], measured["channels"]) == (48000, 2)
    assert measured["peak_hz"] == pytest.approx(440.0, abs=2.0)
    assert measured["level"] == pytest.approx(0.5, abs=0.01)


# ------------------------------------------------------------------------------------------------ parsing


def test_source_strings_name_their_kind() -> None:
    stdin = io.BytesIO(b"")
    options = SourceOptions(raw_pcm=RawPcmFormat(sample_rate=8000))
    assert isinstance(open_source("-", options, stdin=stdin), RawPcmSource)
    assert open_source("-", options, stdin=stdin).pcm_format.sample_rate == 8000  # type: ignore[attr-defined]
    mic = open_source("mic:USB Audio")
    assert isinstance(mic, MicrophoneSource) and mic.device == "USB Audio" and mic.kind == "microphone"
    assert open_source("mic:2").device == 2  # type: ignore[attr-defined]
    assert isinstance(open_source("rtsp://cam.local:554/stream1"), UrlSource)
    assert isinstance(open_source("HTTPS://radio.example/live.mp3"), UrlSource)
    assert isinstance(open_source("./mic"), FileSource)
    url = open_source("rtsp://user:secret@10.1.2.3:554/live?auth=xyz")
    assert url.description == "rtsp://***@10.1.2.3:554/***?***" and url.kind == "url" and url.live


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ftp://host/a.wav", "unsupported URL scheme 'ftp'"),
        ("  ", "empty source"),
    ],
)
def test_malformed_source_strings_are_rejected(spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(spec)
