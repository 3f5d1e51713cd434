"""Sound formats that libsndfile cannot read: Doom WAD sound lumps (Freedoom) and WavPack files (Teeworlds).

Kept apart from :mod:`models.training.game_sounds` so its labelling rules stay readable; both decoders return
raw samples, and the caller brings them to 16 kHz mono.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt

from domain.audio import SAMPLE_RATE
from models.training.errors import DatasetError, MissingPackageError

_WAD_HEADER = struct.Struct("<4sii")  # magic "IWAD"/"PWAD", number of lumps, directory offset
_WAD_ENTRY = struct.Struct("<ii8s")  # lump offset, lump size, name (NUL-padded)
_DOOM_SOUND_HEADER = struct.Struct("<HHI")  # format (3), sample rate, sample count (padding included)
_DOOM_SOUND_FORMAT = 3
_DOOM_PADDING = 16  # the DMX mixer's pad bytes at each end of the samples, counted in the sample count


def wad_lumps(path: str | Path, prefix: str = "") -> dict[str, bytes]:
    """The lumps of a Doom WAD whose names start with ``prefix`` (sound effects are ``DS*``), by name.

    A WAD is a header (magic, lump count, directory offset) and a directory of 16-byte entries (offset, size,
    name); the first lump of a name wins, as in the engine's own lookup of an IWAD.
    """
    data = Path(path).read_bytes()
    if len(data) < _WAD_HEADER.size:
        raise DatasetError(f"{path} is too short to be a WAD")
    magic, count, directory = _WAD_HEADER.unpack_from(data, 0)
    if magic not in (b"IWAD", b"PWAD") or count < 0 or directory + count * _WAD_ENTRY.size > len(data):
        raise DatasetError(f"{path} is not a WAD (magic {magic!r}, {count} lumps at {directory})")
    lumps: dict[str, bytes] = {}
    for index in range(count):
        offset, size, raw_name = _WAD_ENTRY.unpack_from(data, directory + index * _WAD_ENTRY.size)
        name = raw_name.split(b"\0", 1)[0].decode("ascii", errors="replace").upper()
        if not name.startswith(prefix.upper()) or name in lumps:
            continue
        if offset < 0 or size < 0 or offset + size > len(data):
            raise DatasetError(f"{path}: lump {name} lies outside the file")
        lumps[name] = data[offset : offset + size]
    return lumps


def is_doom_sound(lump: bytes) -> bool:
    """Whether a lump is a playable Doom sound (format 3 with samples); Freedoom keeps empty placeholders."""
    if len(lump) < _DOOM_SOUND_HEADER.size:
        return False
    fmt, rate, count = _DOOM_SOUND_HEADER.unpack_from(lump, 0)
    playable: bool = fmt == _DOOM_SOUND_FORMAT and rate > 0
    return playable and 2 * _DOOM_PADDING < count <= len(lump) - _DOOM_SOUND_HEADER.size


def decode_doom_sound(lump: bytes) -> tuple[npt.NDArray[np.float32], int]:
    """(samples in [-1, 1), sample rate) of a Doom sound lump: unsigned 8-bit PCM after an 8-byte header,
    without the 16 pad bytes at either end."""
    if not is_doom_sound(lump):
        raise DatasetError(f"not a Doom sound lump ({len(lump)} bytes, header {lump[:8].hex()})")
    _, rate, count = _DOOM_SOUND_HEADER.unpack_from(lump, 0)
    start = _DOOM_SOUND_HEADER.size + _DOOM_PADDING
    pcm = np.frombuffer(lump, dtype=np.uint8, count=count - 2 * _DOOM_PADDING, offset=start)
    return (pcm.astype(np.float32) - 128.0) / 128.0, int(rate)


def decode_with_ffmpeg(path: str | Path) -> npt.NDArray[np.float32]:
    """Any file ffmpeg reads (here WavPack, which libsndfile lacks) as 16 kHz mono float32."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise MissingPackageError(["ffmpeg"], f"decoding {Path(path).name}")
    command = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path)]
    command += ["-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]  # raw little-endian float32
    result = subprocess.run(command, capture_output=True, check=False, timeout=120)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise DatasetError(f"ffmpeg cannot decode {path}: {message or f'exit status {result.returncode}'}")
    return np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)
