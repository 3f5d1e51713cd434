"""Audio sources: files, network streams, a microphone and raw PCM on stdin, each yielding float32 blocks.

A source yields ``AudioBlock``s at the source's own rate and channel count; normalising to 16 kHz mono is the
next stage's job. Every failure is a ``SourceError`` that names the (redacted) source and the reason, so a
capture actor can turn it into a StreamFailed event and the CLI into a readable message.

Network sources reconnect after errors (refused, reset, timed out, truncated) with exponential backoff and
jitter, up to ``ReconnectPolicy.max_attempts`` consecutive failed attempts; a clean end of stream (the server
closed a response whose end it had announced) finishes the stream. Files never reconnect.

Input that was only partly read is not an error but must not pass for complete either: after ``blocks`` returns,
a source's ``warnings`` say what of it was never heard. A file is checked against what its container declares
(the WAV header's data size, FLAC's sample count, an MP3's Xing frame count, the M4A duration; an Ogg stream
must end with its end-of-stream page), and a decoder error after some audio keeps the audio heard before it.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import re
import select
import struct
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
# A file is reported as partly read when more than this is missing from what its container declares: at least
# 0.1 s and 1 % (complete files differ from their declared length by encoder padding; lengths only estimated from
# the bit rate, as for MP3 without a Xing header, are not taken as declared).
MISSING_TOLERANCE_S: Final = 0.1
MISSING_TOLERANCE_FRACTION: Final = 0.01


# A file source's reasons that callers tell apart (a missing file and a permission are not bad input).
NO_SUCH_FILE: Final = "no such file"
PERMISSION_DENIED: Final = "permission denied"


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
    warnings: list[str]  # what of the input was never heard (cut off, undecodable); empty when all of it was
    declared_seconds: float | None  # how long the input says it is (a file's container), when it says

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


def _decode_audio(
    container: av.container.InputContainer, description: str, stop: threading.Event, damaged: list[float] | None = None
) -> Iterator[AudioBlock]:
    """Decoded blocks of a container's first audio stream; a missing stream or decoder is a ``SourceError``.

    With ``damaged``, a packet the decoder refuses is skipped, its seconds appended there, and decoding goes on
    (a recording with a few damaged frames keeps the rest); without it, the first refusal ends decoding.
    """
    if not container.streams.audio:
        kinds: list[str] = sorted({stream.type for stream in container.streams}) or ["none"]
        raise SourceError(description, f"no audio stream in the input (streams found: {', '.join(kinds)})")
    stream = container.streams.audio[0]
    if stream.codec_context is None:
        raise SourceError(description, "unsupported codec: FFmpeg has no decoder for the audio stream")
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            if damaged is None:
                raise
            damaged.append(float(packet.duration * packet.time_base) if packet.duration and packet.time_base else 0.0)
            continue
        for frame in frames:
            if not isinstance(frame, av.AudioFrame) or frame.samples == 0:
                continue
            yield AudioBlock(_frame_samples(frame), int(frame.sample_rate))
            if stop.is_set():
                return


# ------------------------------------------------------------------------------------------------- files

# WAV format tags whose frames are ``block_align`` bytes each: PCM, IEEE float, A-law, mu-law, extensible.
_WAV_FRAME_FORMATS: Final = frozenset({0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE})
# A data size of 0 or 0xFFFFFFFF is what writers put before they know the length (a stream being recorded).
_WAV_UNKNOWN_SIZES: Final = frozenset({0, 0xFFFFFFFF})
# libsndfile reports about 2**63 frames when a file does not say its length.
_UNKNOWN_FRAMES: Final = 2**62
# The largest Ogg page: 27-byte header, 255 lacing values of up to 255 bytes each.
_OGG_PAGE_MAX_BYTES: Final = 27 + 255 + 255 * 255
_OGG_END_OF_STREAM: Final = 0x04
# An MP3's frame count is in a Xing/Info (LAME) or VBRI header in its first frame, right after any ID3v2 tag.
_MP3_FRAME_COUNT_TAGS: Final = (b"Xing", b"Info", b"VBRI")
_MP3_FIRST_FRAME_BYTES: Final = 4096
# FFmpeg containers whose duration is a header field; elsewhere (ADTS AAC, raw MP3, ...) it is estimated from the
# bit rate, off by over 1 % on complete files.
_DECLARING_CONTAINERS: Final = frozenset(
    {"mov", "mp4", "m4a", "matroska", "webm", "asf", "flac", "ogg", "wav", "w64", "aiff", "caf"}
)


def wav_declared_frames(path: Path) -> int | None:
    """The frames a WAV file's header declares (its data chunk's size), or None when it does not say.

    libsndfile and FFmpeg both shrink a truncated file's length to what is present, so only the header itself
    still tells how much audio the file was meant to hold.
    """
    with path.open("rb") as stream:
        riff = stream.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:] != b"WAVE":
            return None
        block_align = 0
        while len(header := stream.read(8)) == 8:
            chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk_id == b"data":
                return size // block_align if block_align and size not in _WAV_UNKNOWN_SIZES else None
            if chunk_id == b"fmt ":
                fmt = stream.read(size)
                if len(fmt) < 14 or struct.unpack("<H", fmt[:2])[0] not in _WAV_FRAME_FORMATS:
                    return None
                block_align = struct.unpack("<H", fmt[12:14])[0]
                stream.seek(size % 2, os.SEEK_CUR)
            else:
                stream.seek(size + size % 2, os.SEEK_CUR)
    return None


def mp3_declares_frames(path: Path) -> bool:
    """Whether an MP3 file states its frame count; without it the length is estimated from the file size, tags
    included, and a long tag would look like missing audio."""
    with path.open("rb") as stream:
        id3 = stream.read(10)
        if len(id3) == 10 and id3[:3] == b"ID3":
            size = (id3[6] & 0x7F) << 21 | (id3[7] & 0x7F) << 14 | (id3[8] & 0x7F) << 7 | (id3[9] & 0x7F)
            stream.seek(10 + size + (10 if id3[5] & 0x10 else 0))  # the footer flag adds 10 bytes
        else:
            stream.seek(0)
        first_frame = stream.read(_MP3_FIRST_FRAME_BYTES)
    return any(tag in first_frame for tag in _MP3_FRAME_COUNT_TAGS)


def ogg_cut_off(path: Path) -> bool:
    """True when an Ogg file does not end with a whole end-of-stream page: its writer never finished it.

    Ogg declares no length, so a file cut at any byte decodes to a shorter, valid-looking stream; the end-of-stream
    flag on a last page that ends exactly at the end of the file is what only a finished file has.
    """
    size = path.stat().st_size
    with path.open("rb") as stream:
        stream.seek(max(0, size - _OGG_PAGE_MAX_BYTES))
        tail = stream.read()
    start = tail.rfind(b"OggS")
    while start >= 0:  # from the last capture pattern back, in case page data happens to contain "OggS"
        header = tail[start : start + 27]
        if len(header) == 27 and header[4] == 0:
            lacing = tail[start + 27 : start + 27 + header[26]]
            page_end = start + 27 + header[26] + sum(lacing)
            if len(lacing) == header[26] and page_end == len(tail) and header[5] & _OGG_END_OF_STREAM:
                return False
        start = tail.rfind(b"OggS", 0, start)
    return True


def missing_audio(heard_s: float, declared_s: float | None) -> str | None:
    """A warning when clearly less was decoded than the container declares (see ``MISSING_TOLERANCE_S``)."""
    if declared_s is None or declared_s - heard_s <= max(MISSING_TOLERANCE_S, MISSING_TOLERANCE_FRACTION * declared_s):
        return None
    return (
        f"only {heard_s:.1f} s of the {declared_s:.1f} s the file declares could be decoded "
        f"({declared_s - heard_s:.1f} s never heard): the file is cut off or damaged"
    )


def _decoding_stopped(heard_s: float, declared_s: float | None, reason: str) -> str:
    of_declared = "" if declared_s is None else f" of the {declared_s:.1f} s the file declares"
    return f"decoding stopped after {heard_s:.1f} s{of_declared}, the rest was never heard: {reason}"


class FileSource:
    """An audio file: libsndfile for the formats it reads (WAV, FLAC, OGG), FFmpeg (PyAV) for MP3 and the rest.

    A decoder error after the first samples ends the stream with what was heard and a warning instead of failing
    it; so does a file that decodes to clearly less than its container declares.
    """

    kind = "file"
    live = False
    reconnects = 0

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)
        self.warnings: list[str] = []
        self.declared_seconds: float | None = None

    def blocks(self, stop: threading.Event) -> Generator[AudioBlock, None, None]:
        self._check_path()
        self.warnings, self.declared_seconds = [], None
        try:
            sound_file = soundfile.SoundFile(self.path)
        except soundfile.LibsndfileError:  # not a libsndfile format (M4A, AAC, ...) or corrupt: let FFmpeg try
            yield from self._blocks_with_pyav(stop)
            return
        if sound_file.format == "MP3":  # libmpg123 writes a line to stderr per damaged frame; FFmpeg counts them
            sound_file.close()
            yield from self._blocks_with_pyav(stop)
            return
        with sound_file:
            if sound_file.frames == 0:
                raise SourceError(self.description, "zero-length audio: the file holds no samples")
            rate = int(sound_file.samplerate)
            declared = _libsndfile_declared_frames(self.path, sound_file)
            self.declared_seconds = None if declared is None else declared / rate
            block_frames = max(1, round(rate * FILE_BLOCK_SECONDS))
            heard = 0
            try:
                # read() until it comes back empty: blocks() counts on the declared length and, for an MP3 cut
                # short, keeps yielding stale buffers up to it.
                while (samples := sound_file.read(block_frames, dtype="float32", always_2d=True)).shape[0]:
                    heard += samples.shape[0]
                    yield AudioBlock(np.ascontiguousarray(samples), rate)
                    if stop.is_set():
                        return
            except (soundfile.LibsndfileError, RuntimeError) as error:
                self._decoder_failed(heard / rate, f"corrupt audio data: {error}", error)
                return
        self._check_complete(heard / rate, is_ogg=sound_file.format == "OGG")

    def _check_path(self) -> None:
        if not self.path.exists():
            raise SourceError(self.description, NO_SUCH_FILE)
        if self.path.is_dir():
            raise SourceError(self.description, "is a directory, not an audio file")
        if not os.access(self.path, os.R_OK):
            raise SourceError(self.description, PERMISSION_DENIED)
        if self.path.stat().st_size == 0:
            raise SourceError(self.description, "zero-length audio: the file is empty")

    def _decoder_failed(self, heard_s: float, reason: str, error: Exception) -> None:
        """Nothing heard yet: the file is unreadable. Otherwise keep what was heard and say where it stopped."""
        if heard_s == 0:
            raise SourceError(self.description, reason) from error
        self.warnings.append(_decoding_stopped(heard_s, self.declared_seconds, reason))

    def _check_complete(self, heard_s: float, *, is_ogg: bool) -> None:
        """After a clean end of decoding: warn when the file holds less than it declares."""
        missing = missing_audio(heard_s, self.declared_seconds)
        if missing is not None:
            self.warnings.append(missing)
        elif is_ogg and ogg_cut_off(self.path):
            self.warnings.append(
                f"the Ogg stream ends after {heard_s:.1f} s without its end-of-stream page: "
                "the recording was cut off, what followed was never heard"
            )

    def _blocks_with_pyav(self, stop: threading.Event) -> Iterator[AudioBlock]:
        try:
            container = av.open(str(self.path), mode="r")
        except av.error.InvalidDataError as error:
            raise SourceError(self.description, "unreadable or corrupt audio: not a recognised audio format") from error
        except av.error.FFmpegError as error:
            raise SourceError(self.description, f"cannot open: {error.strerror}") from error
        heard_s = 0.0
        damaged: list[float] = []
        with container:
            self.declared_seconds = _declared_seconds(container, self.path)
            try:
                for block in _decode_audio(container, self.description, stop, damaged):
                    heard_s += block.frames / block.sample_rate
                    yield block
            except av.error.FFmpegError as error:
                self._decoder_failed(heard_s, f"corrupt audio data: {error.strerror}", error)
                return
            if stop.is_set():
                return
            if heard_s == 0:
                raise SourceError(
                    self.description,
                    "unreadable or corrupt audio: no packet could be decoded"
                    if damaged
                    else "zero-length audio: the file decodes to no samples",
                )
            if damaged:
                self.warnings.append(f"{len(damaged)} damaged packet(s) skipped, {sum(damaged):.2f} s never heard")
            self._check_complete(heard_s + sum(damaged), is_ogg=container.format.name == "ogg")


def _libsndfile_declared_frames(path: Path, sound_file: soundfile.SoundFile) -> int | None:
    """The frames the file's header declares, where it declares them (libsndfile fixes up or estimates others)."""
    if sound_file.format in ("WAV", "WAVEX"):
        return wav_declared_frames(path)
    return int(sound_file.frames) if sound_file.frames < _UNKNOWN_FRAMES else None


def _declared_seconds(container: av.container.InputContainer, path: Path) -> float | None:
    """The audio stream's duration from the container's header, when the container has one (see
    ``_DECLARING_CONTAINERS``, and an MP3 that states its frame count): the stream's own, else the container's."""
    names = set(container.format.name.split(","))
    if _DECLARING_CONTAINERS.isdisjoint(names) and not ("mp3" in names and mp3_declares_frames(path)):
        return None
    streams = container.streams.audio
    if streams and streams[0].duration is not None and streams[0].time_base is not None:
        return float(streams[0].duration * streams[0].time_base)
    return container.duration / av.time_base if container.duration is not None else None


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
    declared_seconds: float | None = None

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
        self.warnings: list[str] = []
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
                        log.info(
                            "network source reconnected",
                            extra={"source": self.description, "reconnects": self.reconnects},
                        )
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
            log.warning(
                "network source failed; reconnecting",
                extra={
                    "source": self.description,
                    "reason": redact_text(reason),
                    "failures": failures,
                    "delay_s": round(delay, 3),
                },
            )
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
    declared_seconds: float | None = None

    def __init__(self, device: str | None = None) -> None:
        self.device: int | str | None = int(device) if device is not None and device.isdigit() else device
        self.description = MICROPHONE if device is None else f"{MICROPHONE}:{device}"
        self.warnings: list[str] = []

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
                device=self.device,
                samplerate=rate,
                channels=channels,
                dtype="float32",
                blocksize=max(1, round(rate * MICROPHONE_BLOCK_SECONDS)),
                callback=on_audio,
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
            self.warnings.append(
                f"{overflows * MICROPHONE_BLOCK_SECONDS:.2f} s of microphone audio dropped: "
                "the capture fell more than ten seconds behind"
            )


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
    warnings: list[str] = field(default_factory=list)
    declared_seconds: float | None = None

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
            log.warning(
                "raw PCM ended inside a frame; partial frame dropped",
                extra={"source": self.description, "dropped_bytes": len(leftover)},
            )
            self.warnings.append(f"the input ended inside a PCM frame: its last {len(leftover)} byte(s) were dropped")
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
            reconnect=ReconnectPolicy(
                max_attempts=capture.reconnect_max_attempts,
                base_delay_s=capture.reconnect_base_delay_s,
                max_delay_s=capture.reconnect_max_delay_s,
            ),
            raw_pcm=raw_pcm or RawPcmFormat(),
        )


def open_source(
    spec: str,
    options: SourceOptions = SourceOptions(),
    *,
    stdin: BinaryIO | None = None,
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
            raise SourceError(
                redact_url(spec), f"unsupported URL scheme {scheme.group(1)!r}; use one of {', '.join(URL_SCHEMES)}"
            )
        return UrlSource(
            spec,
            connect_timeout_s=options.connect_timeout_s,
            read_timeout_s=options.read_timeout_s,
            reconnect=options.reconnect,
        )
    return FileSource(Path(spec))
