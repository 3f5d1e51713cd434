"""How fast ``models.features`` is against librosa and torchaudio computing the same features, same threads.

All three run in one process on the same inputs with every thread pool (numba, torch, BLAS/OpenMP) limited to
``THREADS``. Two inputs: synthetic audio (noise, tones, a chirp and bursts) and real speech from espeak-ng
(looped). Two cases: a stream fed in 1 s chunks (each baseline carries the unfinished frame's samples across
chunks exactly as ``StreamingFeatureExtractor`` does, so all compute the same frames) and a whole long file.
Times are CPU seconds of this process (``time.process_time``, all its threads), so other work on a shared
machine does not count against whichever contender it happens to overlap; with one thread each this equals
wall time on an idle machine. Every case is timed several times with the three contenders interleaved, after
a warm-up (JIT, caches, lazy imports), and the best run counts. ``x_realtime_per_core`` is audio seconds per
CPU second.

Run with ``distress bench features [--json]`` or ``python -m benchmarks.features [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from models.features import FeatureConfig, StreamingFeatureExtractor, extract_features

THREADS = 1
CHUNK_SECONDS = 1.0
CHUNK_INPUT_SECONDS = 30.0
CHUNK_REPEATS = 7
LONG_REPEATS = 2
TARGET_VS_LIBROSA = 5.0
TARGET_VS_TORCHAUDIO = 1.2
SPEECH_TEXTS = (
    "Help! Somebody help me, please. Call the police, he has a knife.",
    "I fell down the stairs and I cannot get up. Can anyone hear me?",
    "Stop it, let go of me! Get away from me! Somebody call an ambulance.",
)
SPEECH_VOICES = ("en", "en+f3")

Signal = npt.NDArray[np.float32]
Workload = TypeVar("Workload")


class BenchmarkError(RuntimeError):
    """The benchmark cannot run here (a missing tool or package); the message says what to install."""


def limit_threads(threads: int) -> None:
    """Give numba, torch and every BLAS/OpenMP pool the same thread count so the comparison is fair."""
    import numba
    import threadpoolctl
    import torch

    numba.set_num_threads(threads)
    torch.set_num_threads(threads)
    threadpoolctl.threadpool_limits(threads)


def synthetic_signal(seconds: float, sample_rate: int, seed: int = 0) -> Signal:
    """Noise plus harmonic tones, a rising chirp and loud bursts: every feature has something to measure."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tones = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 660 * t)
    chirp = 0.15 * np.sin(2 * np.pi * (300 * t + 400 * (t % 2.0) ** 2))
    bursts = (np.sin(2 * np.pi * 0.7 * t) > 0.95) * rng.standard_normal(t.size) * 0.5
    noise = 0.02 * rng.standard_normal(t.size)
    return np.clip(tones + chirp + bursts + noise, -1.0, 1.0).astype(np.float32)


def speech_signal(seconds: float, sample_rate: int) -> Signal:
    """Real speech from espeak-ng (a few voices and sentences), resampled and looped to ``seconds``."""
    import soundfile
    import soxr

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise BenchmarkError("espeak-ng is not installed (apt-get install -y espeak-ng); it makes the speech input")
    pieces = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, (voice, text) in enumerate((voice, text) for voice in SPEECH_VOICES for text in SPEECH_TEXTS):
            wav = Path(scratch) / f"speech{index}.wav"
            subprocess.run([espeak, "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
            audio, rate = soundfile.read(wav, dtype="float32", always_2d=True)
            pieces.append(soxr.resample(audio.mean(axis=1), rate, sample_rate))
    speech = np.concatenate(pieces)
    repeats = int(np.ceil(seconds * sample_rate / speech.size))
    return np.tile(speech, repeats)[: int(seconds * sample_rate)].astype(np.float32)


FeatureFunction = Callable[[Signal], object]


@dataclass(frozen=True)
class Contender:
    """One implementation: what it computes, a whole-signal function and a factory of 1 s-chunk consumers."""

    name: str
    computes: str
    whole: FeatureFunction
    new_stream: Callable[[], FeatureFunction]


def _carry_overlap(config: FeatureConfig, compute: FeatureFunction) -> Callable[[], FeatureFunction]:
    """Streams for a baseline: each chunk is prefixed with the unfinished frame's samples, as ours does."""

    def new_stream() -> FeatureFunction:
        pending = np.zeros(0, dtype=np.float32)

        def push(chunk: Signal) -> object:
            nonlocal pending
            buffer = np.concatenate((pending, chunk))
            n_frames = config.frames_in(buffer.size)
            pending = buffer[n_frames * config.hop_length :]
            if n_frames == 0:
                return None
            return compute(buffer[: (n_frames - 1) * config.hop_length + config.win_length])

        return push

    return new_stream


def ours(config: FeatureConfig) -> Contender:
    def new_stream() -> FeatureFunction:
        return StreamingFeatureExtractor(config).push

    return Contender(
        name="ours",
        computes="models.features: all features (numba kernels + scipy.fft float32 rfft), YIN pitch with voicing",
        whole=lambda signal: extract_features(signal, config),
        new_stream=new_stream,
    )


def librosa_contender(config: FeatureConfig) -> Contender:
    """librosa computing the same features from one STFT and a precomputed filterbank (its fastest use)."""
    import librosa

    pad = (config.n_fft - config.win_length) // 2
    mel_basis = librosa.filters.mel(
        sr=config.sample_rate,
        n_fft=config.n_fft,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        htk=True,
        norm=None,
    )
    bin_hz = librosa.fft_frequencies(sr=config.sample_rate, n_fft=config.n_fft)
    win, hop = config.win_length, config.hop_length

    def compute(signal: Signal) -> object:
        magnitude = np.abs(
            librosa.stft(
                np.pad(signal, pad),
                n_fft=config.n_fft,
                hop_length=config.hop_length,
                win_length=config.win_length,
                window="hann",
                center=False,
            )
        )
        log_mel = np.log(mel_basis @ magnitude**2 + 1e-6)
        return (
            librosa.feature.mfcc(S=log_mel, n_mfcc=config.n_mfcc),
            librosa.feature.rms(y=signal, frame_length=win, hop_length=hop, center=False),
            librosa.feature.zero_crossing_rate(signal, frame_length=win, hop_length=hop, center=False),
            librosa.feature.spectral_centroid(S=magnitude, freq=bin_hz),
            librosa.feature.spectral_rolloff(S=magnitude, freq=bin_hz, roll_percent=config.rolloff_percent),
            librosa.feature.spectral_flatness(S=magnitude, power=2.0),
            librosa.onset.onset_strength(S=log_mel, lag=1, max_size=1, center=False),
            librosa.yin(
                signal,
                fmin=config.yin_fmin,
                fmax=config.yin_fmax,
                sr=config.sample_rate,
                frame_length=win,
                hop_length=hop,
                trough_threshold=config.yin_threshold,
                center=False,
            ),
        )

    return Contender(
        name="librosa",
        computes=(
            f"librosa {version('librosa')}: stft, log-mel (precomputed filterbank), feature.mfcc, rms, "
            "zero_crossing_rate, spectral_centroid/rolloff/flatness, onset.onset_strength, yin"
        ),
        whole=compute,
        new_stream=_carry_overlap(config, compute),
    )


def torchaudio_contender(config: FeatureConfig) -> Contender:
    """torchaudio transforms for spectrum and mel, torch ops for the rest, detect_pitch_frequency."""
    import torch
    import torchaudio

    pad = (config.n_fft - config.win_length) // 2
    spectrogram = torchaudio.transforms.Spectrogram(
        n_fft=config.n_fft,
        win_length=config.win_length,
        hop_length=config.hop_length,
        center=False,
        power=None,
    )
    mel_scale = torchaudio.transforms.MelScale(
        n_mels=config.n_mels,
        sample_rate=config.sample_rate,
        f_min=config.fmin,
        f_max=config.fmax,
        n_stft=config.n_fft // 2 + 1,
        norm=None,
        mel_scale="htk",
    )
    dct = torchaudio.functional.create_dct(config.n_mfcc, config.n_mels, norm="ortho")
    bin_hz = torch.linspace(0, config.sample_rate / 2, config.n_fft // 2 + 1)[:, None]

    def compute(signal: Signal) -> object:
        with torch.inference_mode():
            waveform = torch.from_numpy(signal)
            magnitude = spectrogram(torch.nn.functional.pad(waveform, (pad, pad))).abs()
            power = magnitude**2
            log_mel = torch.log(mel_scale(power) + 1e-6)
            mfcc = dct.T @ log_mel
            frames = waveform.unfold(0, config.win_length, config.hop_length)
            rms = frames.square().mean(dim=1).sqrt()
            negative = frames < -1e-10
            zcr = (negative[:, 1:] != negative[:, :-1]).sum(dim=1) / config.win_length
            magnitude_sum = magnitude.sum(dim=0)
            centroid = (bin_hz * magnitude).sum(dim=0) / magnitude_sum.clamp_min(1e-30)
            reached = magnitude.cumsum(dim=0) >= config.rolloff_percent * magnitude_sum
            rolloff = bin_hz[reached.int().argmax(dim=0), 0]
            floored = power.clamp_min(1e-10)
            flatness = floored.log().mean(dim=0).exp() / floored.mean(dim=0)
            flux = torch.relu(log_mel[:, 1:] - log_mel[:, :-1]).mean(dim=0)
            pitch = torchaudio.functional.detect_pitch_frequency(
                waveform[None],
                config.sample_rate,
                frame_time=config.hop_length / config.sample_rate,
                win_length=3,
                freq_low=int(config.yin_fmin),
                freq_high=int(config.yin_fmax),
            )
            return mfcc, rms, zcr, centroid, rolloff, flatness, flux, pitch

    return Contender(
        name="torchaudio",
        computes=(
            f"torchaudio {version('torchaudio')} (torch {version('torch')}): Spectrogram, MelScale, "
            "create_dct MFCC, torch ops for rms/zcr/centroid/rolloff/flatness/flux, "
            "functional.detect_pitch_frequency (NCCF, 3-frame median) for pitch"
        ),
        whole=compute,
        new_stream=_carry_overlap(config, compute),
    )


def _stream_seconds(contender: Contender, chunks: list[Signal]) -> float:
    """CPU seconds to push ``chunks`` through a fresh stream of ``contender``."""
    push = contender.new_stream()
    start = time.process_time()
    for chunk in chunks:
        push(chunk)
    return time.process_time() - start


def _whole_seconds(contender: Contender, signal: Signal) -> float:
    start = time.process_time()
    contender.whole(signal)
    return time.process_time() - start


def _best_of(
    repeats: int,
    contenders: list[Contender],
    measure: Callable[[Contender, Workload], float],
    workload: Workload,
) -> dict[str, float]:
    """The fastest of ``repeats`` measurements per contender, the contenders interleaved within each round."""
    best = {contender.name: float("inf") for contender in contenders}
    for _ in range(repeats):
        for contender in contenders:
            best[contender.name] = min(best[contender.name], measure(contender, workload))
    return best


def _rates(seconds_of_audio: float, cpu_seconds: float) -> dict[str, float]:
    return {
        "cpu_seconds": cpu_seconds,
        "ms_per_audio_second": 1000.0 * cpu_seconds / seconds_of_audio,
        "x_realtime_per_core": seconds_of_audio / (cpu_seconds * THREADS),
    }


def _speedups(timings: dict[str, float]) -> dict[str, float]:
    return {
        "speedup_vs_librosa": timings["librosa"] / timings["ours"],
        "speedup_vs_torchaudio": timings["torchaudio"] / timings["ours"],
    }


def run(seconds_long: float = 600.0) -> dict[str, Any]:
    """Time all three on both inputs, in 1 s chunks and as one ``seconds_long`` file; return every number."""
    if seconds_long <= 0:
        raise ValueError(f"seconds_long must be positive, got {seconds_long}")
    limit_threads(THREADS)
    config = FeatureConfig()
    rate = config.sample_rate
    contenders = [ours(config), librosa_contender(config), torchaudio_contender(config)]
    inputs = {"synthetic": synthetic_signal(seconds_long, rate), "speech": speech_signal(seconds_long, rate)}
    chunk_samples = int(CHUNK_SECONDS * rate)
    chunk_total = {contender.name: 0.0 for contender in contenders}
    long_total = dict(chunk_total)
    per_input: dict[str, Any] = {}
    for input_name, signal in inputs.items():
        head = signal[: int(min(CHUNK_INPUT_SECONDS, seconds_long) * rate)]
        chunks = [head[i : i + chunk_samples] for i in range(0, head.size, chunk_samples)]
        for contender in contenders:  # warm-up: JIT, caches, lazy imports
            _stream_seconds(contender, chunks[:3])
        best = _best_of(CHUNK_REPEATS, contenders, _stream_seconds, chunks)
        long = _best_of(LONG_REPEATS, contenders, _whole_seconds, signal)
        for name in best:
            chunk_total[name] += best[name]
            long_total[name] += long[name]
        per_input[input_name] = {
            "chunks_1s": {name: _rates(head.size / rate, best[name]) for name in best} | _speedups(best),
            "long_file": {name: _rates(signal.size / rate, long[name]) for name in long} | _speedups(long),
        }
    chunk_speedups = _speedups(chunk_total)
    return chunk_speedups | {
        "long_file_speedup_vs_librosa": _speedups(long_total)["speedup_vs_librosa"],
        "long_file_speedup_vs_torchaudio": _speedups(long_total)["speedup_vs_torchaudio"],
        "meets_target": chunk_speedups["speedup_vs_librosa"] >= TARGET_VS_LIBROSA
        and chunk_speedups["speedup_vs_torchaudio"] >= TARGET_VS_TORCHAUDIO,
        "target": {"speedup_vs_librosa": TARGET_VS_LIBROSA, "speedup_vs_torchaudio": TARGET_VS_TORCHAUDIO},
        "threads": THREADS,
        "chunk_seconds": CHUNK_SECONDS,
        "chunk_input_seconds": min(CHUNK_INPUT_SECONDS, seconds_long),
        "chunk_repeats_best_of": CHUNK_REPEATS,
        "long_file_repeats_best_of": LONG_REPEATS,
        "timing": "CPU seconds of this process (time.process_time), best run",
        "long_file_seconds": seconds_long,
        "inputs": {
            "synthetic": "noise + 220/660 Hz tones + chirp + loud noise bursts",
            "speech": f"espeak-ng voices {list(SPEECH_VOICES)}, {len(SPEECH_TEXTS)} sentences, looped",
        },
        "computes": {contender.name: contender.computes for contender in contenders},
        "per_input": per_input,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus_visible": os.cpu_count()},
    }


def render(result: dict[str, Any]) -> str:
    """A plain-text table of the headline numbers, for people."""
    lines = [
        f"threads={result['threads']}  chunk={result['chunk_seconds']} s  long file={result['long_file_seconds']} s",
        f"{'input':<10} {'case':<10} {'contender':<11} {'ms/audio s':>11} {'x RT/core':>10}",
    ]
    for input_name, cases in result["per_input"].items():
        for case, numbers in cases.items():
            for name in ("ours", "librosa", "torchaudio"):
                row = numbers[name]
                lines.append(
                    f"{input_name:<10} {case:<10} {name:<11} "
                    f"{row['ms_per_audio_second']:>11.3f} {row['x_realtime_per_core']:>10.0f}"
                )
    lines.append(
        f"1 s chunks: {result['speedup_vs_librosa']:.1f}x librosa (target {TARGET_VS_LIBROSA}), "
        f"{result['speedup_vs_torchaudio']:.1f}x torchaudio (target {TARGET_VS_TORCHAUDIO})"
    )
    lines.append(
        f"long file: {result['long_file_speedup_vs_librosa']:.1f}x librosa, "
        f"{result['long_file_speedup_vs_torchaudio']:.1f}x torchaudio"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--seconds-long", type=float, default=600.0, help="length of the long-file case")
    arguments = parser.parse_args(argv)
    result = run(arguments.seconds_long)
    print(json.dumps(result, indent=2) if arguments.json else render(result))


if __name__ == "__main__":
    main()
