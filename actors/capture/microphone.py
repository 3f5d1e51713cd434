"""A live input device as a source, through PortAudio (ALSA on Linux)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Generator
from typing import Final

from actors.capture.blocks import AudioBlock, Float32Array, SourceError

log = logging.getLogger(__name__)

MICROPHONE: Final = "mic"
# Microphone callbacks every 50 ms: latency stays far below one chunk.
MICROPHONE_BLOCK_SECONDS: Final = 0.05
# A microphone that delivers nothing for this long is broken (unplugged, muted at the driver).
MICROPHONE_SILENCE_TIMEOUT_S: Final = 5.0


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
