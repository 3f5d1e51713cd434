"""Decoding a container's first audio stream with FFmpeg (PyAV), for the file and network sources alike."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import av
import av.error
import numpy as np

from actors.capture.blocks import AudioBlock, Float32Array, SourceError, integer_to_float


def _frame_samples(frame: av.AudioFrame) -> Float32Array:
    """A decoded PyAV frame as (frames, channels) float32, whatever its sample format and layout."""
    array = frame.to_ndarray()
    channels = frame.layout.nb_channels
    interleaved = array.T if frame.format.is_planar else array.reshape(-1, channels)
    if np.issubdtype(interleaved.dtype, np.integer):
        return integer_to_float(interleaved, unsigned=np.issubdtype(interleaved.dtype, np.unsignedinteger))
    return np.ascontiguousarray(interleaved, dtype=np.float32)


def decode_audio(
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
