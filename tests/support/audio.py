"""Test audio made at test time (tones, encoded files, broken files), a real HTTP server that serves it, and what a
capture published of it."""

from __future__ import annotations

import http.server
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from events import Event
from events.catalogue import AudioChunkCaptured
from events.kafka.bus import Bus
from events.kafka.consumer import ConsumedEvent
from events.kafka.log import read_all

Float32Array = npt.NDArray[np.float32]


def captured_events(bus: Bus) -> list[ConsumedEvent]:
    """Everything on the streams and audio topics, to their end: callers read once the capture's producer has
    closed (or its process exited), so all of it is there."""
    return list(read_all(bus, [bus.catalogue.streams.name, bus.catalogue.audio_chunks.name]))


def chunks_of(received: list[ConsumedEvent], stream_id: str) -> list[AudioChunkCaptured]:
    chunks = [c.event for c in received if isinstance(c.event, AudioChunkCaptured) and c.event.stream_id == stream_id]
    return sorted(chunks, key=lambda chunk: chunk.sequence)


def only(received: list[ConsumedEvent], event_type: type[Event], stream_id: str) -> ConsumedEvent:
    matches = [c for c in received if isinstance(c.event, event_type) and c.event.stream_id == stream_id]
    assert len(matches) == 1, f"expected one {event_type.__name__} for {stream_id}, got {len(matches)}"
    return matches[0]


def assert_contiguous(chunks: list[AudioChunkCaptured]) -> None:
    assert [chunk.sequence for chunk in chunks] == list(range(len(chunks)))
    offset = 0
    for chunk in chunks:
        assert chunk.sample_offset == offset
        offset += len(chunk.pcm16) // 2
    assert [chunk.is_last for chunk in chunks] == [False] * (len(chunks) - 1) + [True]


def tone(
    seconds: float,
    rate: int,
    frequencies: tuple[float, ...] = (440.0,),
    amplitude: float = 0.5,
) -> Float32Array:
    """(frames, channels) float32: one sine per channel, so channels differ and downmixing is visible."""
    frames = round(seconds * rate)
    t = np.arange(frames) / rate
    columns = [amplitude * np.sin(2 * np.pi * frequency * t) for frequency in frequencies]
    return np.stack(columns, axis=1).astype(np.float32)


def write_audio(path: Path, samples: Float32Array, rate: int, subtype: str | None = None) -> Path:
    soundfile.write(path, samples, rate, subtype=subtype)
    return path


def encode_with_ffmpeg(source: Path, target: Path) -> Path:
    """MP3/M4A (or any format ffmpeg picks from the suffix) via the ffmpeg CLI (Debian package ffmpeg)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg is required to make MP3/M4A test files: apt-get install ffmpeg")
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(source), str(target)], check=True, timeout=60)
    return target


def unknown_codec_wav(path: Path, frames: int = 1000) -> Path:
    """A well-formed RIFF/WAVE file whose format tag (0x1234) no decoder knows: an unsupported codec."""
    data = np.zeros(frames, dtype="<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 0x1234, 1, 16000, 32000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@dataclass
class ServedAudio:
    """What the test HTTP server does: serve ``payload``, cutting the first ``drop_first`` responses short;
    from request ``error_from_request`` on (1-based), answer ``error_status`` instead when it is set."""

    payload: bytes
    drop_first: int = 0
    drop_after_bytes: int = 0
    error_status: int | None = None
    error_from_request: int = 1
    requests: list[str] = field(default_factory=list)


class _AudioHandler(http.server.BaseHTTPRequestHandler):
    server: _AudioServer

    def do_GET(self) -> None:
        served = self.server.served
        served.requests.append(self.path)
        if served.error_status is not None and len(served.requests) >= served.error_from_request:
            self.send_error(served.error_status)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(served.payload)))
        self.end_headers()
        if len(served.requests) <= served.drop_first:  # announce the full length, then hang up part-way
            self.wfile.write(served.payload[: served.drop_after_bytes])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(served.payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _AudioServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, served: ServedAudio) -> None:
        super().__init__(("127.0.0.1", 0), _AudioHandler)
        self.served = served


@contextmanager
def http_audio_server(served: ServedAudio) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1; yields its base URL."""
    server = _AudioServer(served)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
