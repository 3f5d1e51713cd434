"""Audio sources: files, network streams, a microphone and raw PCM on stdin, each yielding float32 blocks.

A source yields ``AudioBlock``s at the source's own rate and channel count; normalising to 16 kHz mono is the
next stage's job. Every failure is a ``SourceError`` that names the (redacted) source and the reason, so a
capture actor can turn it into a StreamFailed event and the CLI into a readable message.

Network sources reconnect after errors (refused, reset, timed out, truncated) with exponential backoff and
jitter, up to ``ReconnectPolicy.max_attempts`` consecutive failed attempts; a clean end of stream (the server
closed a response whose end it had announced) finishes the stream. Files never reconnect.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import re
import select
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

import av
import av.error
import numpy as np
import numpy.typing as npt
import soundfile

from config.redaction import redact_text, redact_url
from config.settings import CaptureConfig

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

URL_SCHEMES: Final = ("rtsp", "rtsps", "http", "https")
MICROPHONE: Final = "mic"
STDIN: Final = "-"
# Blocks of about 1/4 s from files: large enough to keep per-block overhead negligible, small enough for pacing.
FILE_BLOCK_SECONDS: Final = 0.25
# Microphone callbacks every 50 ms: latency stays far below one chunk.
MICROPHONE_BLOCK_SECONDS: Final = 0.05
# A microphone that delivers nothing for this long is broken (unplugged, muted at the driver).
MICROPHONE_SILENCE_TIMEOUT_S: Final = 5.0
RAW_PCM_READ_BYTES: Final = 16384
# How often a raw PCM read waiting on an idle pipe looks at the stop flag: a stop is seen this soon even when the
# writer keeps the pipe open without writing (a supervisor that signals only us).
RAW_PCM_STOP_POLL_S: Final = 0.1


class SourceError(Exception):
    """A source could not be opened or read; ``source`` is redacted and ``reason`` says what went wrong."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = redact_text(reason)
        super().__init__(f"{source}: {self.reason}")


@dataclass(frozen=True)
class AudioBlock:
    """Consecutive source frames: ``samples`` is (frames, channels) float32 at ``sample_rate``.

    ``discontinuity`` marks the first block after a reconnect: it does not continue the previous block, so
    resampler state must not blend the two.
    """

    samples: Float32Array
    sample_rate: int
    discontinuity: bool = False

    def __post_init__(self) -> None:
        if self.samples.dtype != np.float32 or self.samples.ndim != 2:
            raise ValueError(f"AudioBlock.samples must be 2-D float32, got {self.samples.dtype} {self.samples.shape}")
        if self.samples.shape[0] == 0 or self.samples.shape[1] == 0:
            raise ValueError(f"AudioBlock.samples must hold at least one frame and channel, got {self.samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"AudioBlock.sample_rate must be positive, got {self.sample_rate}")

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])


class AudioSource(Protocol):
    """Where a stream's audio comes from. ``blocks`` raises ``SourceError``; it returns at the end of the audio."""

    kind: str  # "file", "url", "microphone" or "stdin", as recorded in StreamStarted
    description: str  # redacted: safe for events and logs
    live: bool  # audio arrives in real time (capture timestamps come from arrival, not from the publish time)
    reconnects: int  # reconnections so far (always 0 for sources that never reconnect)

    def blocks(self, stop: threading.Event) -> Generator[AudioBlock, None, None]:
        """The audio, block by block, until its end or until ``stop`` is set; closing it releases the source."""
        ...


# ------------------------------------------------------------------------------------------ sample formats


def _integer_to_float(array: npt.NDArray[Any], *, unsigned: bool) -> Float32Array:
    """Integer PCM to float32 in [-1, 1): signed full scale is 2**(bits-1), unsigned PCM is offset by half."""
    bits = array.dtype.itemsize * 8
    scale = float(2 ** (bits - 1))
    values = array.astype(np.float64)
    if unsigned:
        values -= scale
    return (values / scale).astype(np.float32)


def _frame_samples(frame: av.AudioFrame) -> Float32Array:
    """A decoded PyAV frame as (frames, channels) float32, whatever its sample format and layout."""
    array = frame.to_ndarray()
    channels = frame.layout.nb_channels
    interleaved = array.T if frame.format.is_planar else array.reshape(-1, channels)
    if np.issubdtype(interleaved.dtype, np.integer):
        return _integer_to_float(interleaved, unsigned=np.issubdtype(interleaved.dtype, np.unsignedinteger))
    return np.ascontiguousarray(interleaved, dtype=np.float32)


def _decode_audio(container: av.container.InputContainer, description: str, stop: threading.Event,
                  ) -> Iterator[AudioBlock]:
    """Decoded blocks of a container's first audio stream; a missing stream or decoder is a ``SourceError``."""
    if not container.streams.audio:
        kinds: list[str] = sorted({stream.type for stream in container.streams}) or ["none"]
        raise SourceError(description, f"no audio stream in the input (streams found: {', '.join(kinds)})")
    stream = container.streams.audio[0]
    if stream.codec_context is None:
        raise SourceError(description, "unsupported codec: FFmpeg has no decoder for the audio stream")
    for frame in container.decode(stream):
        if frame.samples == 0:
            continue
        yield AudioBlock(_frame_samples(frame), int(frame.sample_rate))
        if stop.is_set():
            return


# ------------------------------------------------------------------------------------------------- files


class FileSource:
    """An audio file: libsndfile for the formats it reads (WAV, FLAC, OGG, MP3), FFmpeg (PyAV) for the rest."""

    kind = "file"
    live = False
    reconnects = 0

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)

    def blocks(self, stop: threading.Event) -> Generator[AudioBlock, None, None]:
        self._check_path()
        try:
            sound_file = soundfile.SoundFile(self.path)
        except soundfile.LibsndfileError:  # not a libsndfile format (M4A, AAC, ...) or corrupt: let FFmpeg try
            yield from self._blocks_with_pyav(stop)
            return
        with sound_file:
            if sound_file.frames == 0:
                raise SourceError(self.description, "zero-length audio: the file holds no samples")
            block_frames = max(1, round(sound_file.samplerate * FILE_BLOCK_SECONDS))
            try:
                for samples in sound_file.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                    if samples.shape[0]:
                        yield AudioBlock(np.ascontiguousarray(samples), int(sound_file.samplerate))
                    if stop.is_set():
                        return
            except (soundfile.LibsndfileError, RuntimeError) as error:
                raise SourceError(self.description, f"corrupt audio data: {error}") from error

    def _check_path(self) -> None:
        if not self.path.exists():
            raise SourceError(self.description, "no such file")
        if self.path.is_dir():
            raise SourceError(self.description, "is a directory, not an audio file")
        if not os.access(self.path, os.R_OK):
            raise SourceError(self.description, "permission denied")
        if self.path.stat().st_size == 0:
            raise SourceError(self.description, "zero-length audio: the file is empty")

    def _blocks_with_pyav(self, stop: threading.Event) -> Iterator[AudioBlock]:
        try:
            container = av.open(str(self.path), mode="r")
        except av.error.InvalidDataError as error:
            raise SourceError(self.description, "unreadable or corrupt audio: not a recognised audio format") from error
        except av.error.FFmpegError as error:
            raise SourceError(self.description, f"cannot open: {error.strerror}") from error
        produced = False
        with container:
            try:
                for block in _decode_audio(container, self.description, stop):
                    produced = True
                    yield block
            except av.error.FFmpegError as error:
                raise SourceError(self.description, f"corrupt audio data: {error.strerror}") from error
        if not produced and not stop.is_set():
            raise SourceError(self.description, "zero-length audio: the file decodes to no samples")


# ----------------------------------------------------------------------------------------- network streams


@dataclass(frozen=True, kw_only=True)
class ReconnectPolicy:
    """Exponential backoff with jitter between consecutive failed attempts to reach a network source."""

    max_attempts: int = 8
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"ReconnectPolicy.max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 < self.base_delay_s <= self.max_delay_s:
            raise ValueError(
                f"ReconnectPolicy needs 0 < base_delay_s <= max_delay_s, got {self.base_delay_s}, {self.max_delay_s}"
            )

    def delay_s(self, failures: int, rng: random.Random) -> float:
        """Wait after the ``failures``-th consecutive failure: half the capped exponential step plus jitter.

        The jitter keeps many cameras that dropped together from reconnecting in lockstep.
        """
        step = min(self.max_delay_s, self.base_delay_s * 2.0 ** (failures - 1))
        return step / 2 + rng.uniform(0.0, step / 2)


def _is_permanent(error: av.error.FFmpegError) -> bool:
    """Errors that retrying cannot fix: 4xx answers, non-audio data, missing demuxers, decoders or protocols."""
    return isinstance(
        error,
        av.error.HTTPClientError
        | av.error.InvalidDataError
        | av.error.DecoderNotFoundError
        | av.error.DemuxerNotFoundError
        | av.error.ProtocolNotFoundError,
    )


def _ffmpeg_reason(error: av.error.FFmpegError) -> str:
    return str(error.strerror or error)


class UrlSource:
    """An RTSP or HTTP(S)/Icecast stream read by FFmpeg, reconnected after errors."""

    kind = "url"
    live = True

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        reconnect: ReconnectPolicy = ReconnectPolicy(),
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.description = redact_url(url)
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.reconnect = reconnect
        self.reconnects = 0
        self._rng = rng or random.Random()

    def blocks(self, stop: threading.Event) -> Generator[AudioBlock, None, None]:
        failures = 0
        connected_before = False
        while not stop.is_set():
            delivered = False
            try:
                with self._open() as container:
                    if connected_before:
                        self.reconnects += 1
                        log.info("network source reconnected",
                                 extra={"source": self.description, "reconnects": self.reconnects})
                    for block in _decode_audio(container, self.description, stop):
                        yield replace(block, discontinuity=connected_before and not delivered)
                        delivered = True
                return  # clean end of stream, or stopped
            except av.error.FFmpegError as error:
                if _is_permanent(error) and not delivered:
                    raise SourceError(self.description, _ffmpeg_reason(error)) from error
                reason = _ffmpeg_reason(error)
            connected_before = connected_before or delivered
            failures = 1 if delivered else failures + 1
            if failures >= self.reconnect.max_attempts:
                raise SourceError(self.description, f"gave up after {failures} failed attempt(s): {reason}")
            delay = self.reconnect.delay_s(failures, self._rng)
            log.warning("network source failed; reconnecting",
                        extra={"source": self.description, "reason": redact_text(reason), "failures": failures,
                               "delay_s": round(delay, 3)})
            if stop.wait(delay):
                return

    def _open(self) -> av.container.InputContainer:
        options = {"rtsp_transport": "tcp"} if self.url.startswith(("rtsp:", "rtsps:")) else {}
        return av.open(self.url, mode="r", options=options, timeout=(self.connect_timeout_s, self.read_timeout_s))


# ------------------------------------------------------------------------------------------------ microphone


class MicrophoneSource:
    """A live input device through PortAudio (ALSA on Linux); ``device`` is an index or a name fragment."""

    kind = "microphone"
    live = True
    reconnects = 0

    def __init__(self, device: str | None = None) -> None:
        self.device: int | str | None = int(device) if device is not None and device.isdigit() else device
        self.description = MICROPHONE if device is None else f"{MICROPHONE}:{device}"

    def blocks(self, stop: threading.Event) -> Generator[AudioBlock, None, None]:
        try:
            import sounddevice
        except OSError as error:  # the Python package is there but the PortAudio library is not
            raise SourceError(
                self.description, f"no microphone found: {error} (install PortAudio: Debian package libportaudio2)"
            ) from error
        try:
            info = sounddevice.query_devices(device=self.device, kind="input")
        except (sounddevice.PortAudioError, ValueError) as error:
            raise SourceError(self.description, f"no microphone found: {error}") from error
        if not isinstance(info, dict) or int(info["max_input_channels"]) < 1:
            raise SourceError(self.description, "no microphone found: the device has no input channels")
        rate = int(info["default_samplerate"])
        channels = min(int(info["max_input_channels"]), 2)
        captured: queue.Queue[Float32Array] = queue.Queue(maxsize=200)
        overflows = 0

        def on_audio(indata: Float32Array, frames: int, time: object, status: object) -> None:
            nonlocal overflows
            try:
                captured.put_nowait(indata.copy())
            except queue.Full:  # the consumer fell ten seconds behind: drop rather than block the audio thread
                overflows += 1

        try:
            stream = sounddevice.InputStream(
                device=self.device, samplerate=rate, channels=channels, dtype="float32",
                blocksize=max(1, round(rate * MICROPHONE_BLOCK_SECONDS)), callback=on_audio,
            )
        except sounddevice.PortAudioError as error:
            raise SourceError(self.description, f"cannot open the microphone: {error}") from error
        with stream:
            while not stop.is_set():
                try:
                    samples = captured.get(timeout=MICROPHONE_SILENCE_TIMEOUT_S)
                except queue.Empty as error:
                    raise SourceError(
                        self.description, f"the microphone delivered no audio for {MICROPHONE_SILENCE_TIMEOUT_S:.0f} s"
                    ) from error
                yield AudioBlock(samples, rate)
        if overflows:
            log.warning("microphone blocks dropped", extra={"source": self.description, "dropped_blocks": overflows})


# --------------------------------------------------------------------------------------------- raw PCM


RAW_SAMPLE_FORMATS: Final[dict[str, str]] = {"s16le": "<i2", "s32le": "<i4", "f32le": "<f4", "f64le": "<f8"}


@dataclass(frozen=True, kw_only=True)
class RawPcmFormat:
    """Layout of headerless PCM: rate, interleaved channels and sample format (FFmpeg's names)."""

    sample_rate: int = 16000
    channels: int = 1
    sample_format: str = "s16le"

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"raw PCM sample rate must be positive, got {self.sample_rate}")
        if not 1 <= self.channels <= 32:
            raise ValueError(f"raw PCM channels must be between 1 and 32, got {self.channels}")
        if self.sample_format not in RAW_SAMPLE_FORMATS:
            raise ValueError(
                f"unknown raw PCM sample format {self.sample_format!r}; use one of {', '.join(RAW_SAMPLE_FORMATS)}"
            )

    @property
    def dtype(self) -> np.dtype[np.generic]:
        return np.dtype(RAW_SAMPLE_FORMATS[self.sample_format])

    @property
    def frame_bytes(self) -> int:
        return self.dtype.itemsize * self.channels


@dataclass
class RawPcmSource:
    """Headerless PCM from a byte stream (stdin): blocks are yielded as soon as bytes arrive."""

    stream: BinaryIO
    pcm_format: RawPcmFormat = field(default_factory=RawPcmFormat)
    description: str = "stdin"
    kind: str = "stdin"
    live: bool = True
    reconnects: int = 0

    def blocks(self, stop: threading.Event) -> Generator[AudioBlock, None, None]:
        frame_bytes = self.pcm_format.frame_bytes
        leftover = b""
        total_frames = 0
        descriptor = self._descriptor()
        while not stop.is_set():
            data = self._read(descriptor, stop)
            if not data:
                break
            data = leftover + data
            whole = len(data) // frame_bytes * frame_bytes
            leftover = data[whole:]
            if whole:
                total_frames += whole // frame_bytes
                yield AudioBlock(self._to_float(data[:whole]), self.pcm_format.sample_rate)
        if leftover:
            log.warning("raw PCM ended inside a frame; partial frame dropped",
                        extra={"source": self.description, "dropped_bytes": len(leftover)})
        if total_frames == 0 and not stop.is_set():
            raise SourceError(self.description, "zero-length audio: no complete PCM frame was read")

    def _descriptor(self) -> int | None:
        """The stream's file descriptor (a pipe, stdin), or None for in-memory streams, which never block."""
        try:
            return self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.BytesIO raises io.UnsupportedOperation
            return None

    def _read(self, descriptor: int | None, stop: threading.Event) -> bytes:
        """The bytes available now (waiting for some), or b"" at the end of the stream or once stopped.

        A stream with a file descriptor is read straight from the descriptor after ``select`` says it is readable,
        so the wait can look at ``stop``; nothing reads it through its Python buffer first.
        """
        try:
            if descriptor is None:
                read1 = getattr(self.stream, "read1", None)  # what is available instead of waiting to fill
                return bytes(read1(RAW_PCM_READ_BYTES) if read1 is not None else self.stream.read(RAW_PCM_READ_BYTES))
            while not select.select([descriptor], [], [], RAW_PCM_STOP_POLL_S)[0]:
                if stop.is_set():
                    return b""
            return os.read(descriptor, RAW_PCM_READ_BYTES)
        except OSError as error:
            raise SourceError(self.description, f"read failed: {error}") from error

    def _to_float(self, data: bytes) -> Float32Array:
        values = np.frombuffer(data, dtype=self.pcm_format.dtype).reshape(-1, self.pcm_format.channels)
        if np.issubdtype(values.dtype, np.integer):
            return _integer_to_float(values, unsigned=False)
        return values.astype(np.float32)


# ------------------------------------------------------------------------------------------------ parsing

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True, kw_only=True)
class SourceOptions:
    """What opening a source needs besides its name: network timeouts, reconnection, stdin's PCM layout."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    reconnect: ReconnectPolicy = ReconnectPolicy()
    raw_pcm: RawPcmFormat = RawPcmFormat()

    @classmethod
    def from_config(cls, capture: CaptureConfig, raw_pcm: RawPcmFormat | None = None) -> SourceOptions:
        """The options the ``capture`` settings describe (stdin's PCM layout comes from the command line)."""
        return cls(
            connect_timeout_s=capture.connect_timeout_s,
            read_timeout_s=capture.read_timeout_s,
            reconnect=ReconnectPolicy(max_attempts=capture.reconnect_max_attempts,
                                      base_delay_s=capture.reconnect_base_delay_s,
                                      max_delay_s=capture.reconnect_max_delay_s),
            raw_pcm=raw_pcm or RawPcmFormat(),
        )


def open_source(spec: str, options: SourceOptions = SourceOptions(), *, stdin: BinaryIO | None = None,
                ) -> AudioSource:
    """The source a command-line string names: ``-`` (stdin), ``mic``/``mic:DEVICE``, a URL, or a file path.

    Nothing is opened yet: errors of the source itself surface from ``blocks`` (so they become StreamFailed);
    only a malformed string raises ``SourceError`` here. Write ``./mic`` for a file called ``mic``.
    """
    if not spec.strip():
        raise SourceError(repr(spec), "empty source: give a file path, a URL, 'mic' or '-'")
    if spec == STDIN:
        if stdin is None:
            raise SourceError("stdin", "no input stream given for '-'")
        return RawPcmSource(stream=stdin, pcm_format=options.raw_pcm)
    if spec == MICROPHONE or spec.startswith(MICROPHONE + ":"):
        device = spec[len(MICROPHONE) + 1 :] or None
        return MicrophoneSource(device)
    scheme = _SCHEME.match(spec)
    if scheme is not None:
        if scheme.group(1).lower() not in URL_SCHEMES:
            raise SourceError(redact_url(spec), f"unsupported URL scheme {scheme.group(1)!r}; use one of "
                              f"{', '.join(URL_SCHEMES)}")
        return UrlSource(spec, connect_timeout_s=options.connect_timeout_s, read_timeout_s=options.read_timeout_s,
                         reconnect=options.reconnect)
    return FileSource(Path(spec))
