"""Audio files as a source: libsndfile for the formats it reads, FFmpeg for MP3 and the rest.

Input that was only partly read is not an error but must not pass for complete either: after ``blocks`` returns,
``FileSource.warnings`` say what of it was never heard. A file is checked against what its container declares
(the WAV header's data size, FLAC's sample count, an MP3's Xing frame count, the M4A duration; an Ogg stream
must end with its end-of-stream page), and a decoder error after some audio keeps the audio heard before it.
Files never reconnect.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Final

import av
import av.error
import numpy as np
import soundfile

from actors.capture.blocks import AudioBlock, SourceError
from actors.capture.ffmpeg import decode_audio

# Blocks of about 1/4 s from files: large enough to keep per-block overhead negligible, small enough for pacing.
FILE_BLOCK_SECONDS: Final = 0.25

# A file is reported as partly read when more than this is missing from what its container declares: at least
# 0.1 s and 1 % (complete files differ from their declared length by encoder padding; lengths only estimated from
# the bit rate, as for MP3 without a Xing header, are not taken as declared).
MISSING_TOLERANCE_S: Final = 0.1
MISSING_TOLERANCE_FRACTION: Final = 0.01


# A file source's reasons that callers tell apart (a missing file and a permission are not bad input).
NO_SUCH_FILE: Final = "no such file"
PERMISSION_DENIED: Final = "permission denied"

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
                for block in decode_audio(container, self.description, stop, damaged):
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
