"""Frame-level acoustic features for distress detection, computed identically on a stream and on a whole file.

Definitions (all at ``FeatureConfig`` defaults: 16 kHz, 25 ms window, 10 ms hop, 512-point FFT):

* Framing: frame ``i`` covers samples ``[i*hop, i*hop + win)``; there is no centre padding, so a signal of
  ``n`` samples has ``1 + (n - win) // hop`` frames (0 when ``n < win``) and a stream cut at any boundary
  yields exactly the same frames as the whole signal.
* Spectrum: the frame times a periodic Hann window of ``win`` samples, zero-padded to ``n_fft``, real FFT
  in float32 (scipy.fft; librosa too runs a float32 FFT on float32 audio). ``power = |X|^2``,
  ``magnitude = |X|``. Magnitudes equal librosa.stft(np.pad(y, (n_fft - win) // 2), n_fft, hop, win,
  window="hann", center=False): that padding centres librosa's window on the same samples.
* ``log_mel``: ``ln(mel @ power + 1e-6)`` with ``mel = librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax,
  htk=True, norm=None)`` (the HTK, unnormalised filterbank YAMNet uses; built here with numpy). The offset is
  YAMNet's 0.001 magnitude offset, squared because we use power; silence gives ln(1e-6) = -13.8.
* ``mfcc``: the first ``n_mfcc`` coefficients of the orthonormal DCT-II of ``log_mel`` (librosa.feature.mfcc
  with ``S=log_mel``).
* ``rms``: sqrt(mean(frame^2)) of the unwindowed frame (librosa.feature.rms, center=False).
  ``dbfs = 20 log10(max(rms, 10^(dbfs_floor/20)))``: a full-scale sine is -3 dBFS, silence is ``dbfs_floor``.
* ``zcr``: sign changes between consecutive samples of the unwindowed frame divided by ``win``; samples within
  +-1e-10 count as positive (librosa.feature.zero_crossing_rate, center=False).
* ``centroid``: magnitude-weighted mean frequency in Hz, 0 for a silent frame
  (librosa.feature.spectral_centroid).
* ``rolloff``: the lowest bin frequency below which ``rolloff_percent`` of the total magnitude lies
  (librosa.feature.spectral_rolloff).
* ``flatness``: geometric over arithmetic mean of ``max(power, 1e-10)`` (librosa.feature.spectral_flatness).
* ``flux``: mean over mel bands of the rise ``max(log_mel[t] - log_mel[t-1], 0)``; 0 for a stream's first
  frame (librosa.onset.onset_strength(S=log_mel, lag=1, max_size=1, center=False)). On log energy, so it
  measures sudden onsets (bangs, breaking glass) independently of the input gain.
* ``pitch_hz`` and ``voicing``: classic YIN (de Cheveigne and Kawahara 2002) on the unwindowed frame,
  searching periods ``floor(sr / yin_fmax)`` to ``ceil(sr / yin_fmin)`` with a fixed integration window of
  ``win`` minus the longest period. A frame is voiced when the cumulative-mean-normalised difference (CMND)
  has a trough below ``yin_threshold``; ``pitch_hz`` is then the first such trough refined by parabolic
  interpolation (troughs and refinement as in librosa.yin), 0 otherwise. ``voicing = clip(1 - CMND at the
  chosen lag, 0, 1)`` measures periodicity. Frames at or below the dBFS floor are unvoiced with voicing 0.
  librosa 0.11's yin differs in one respect: its difference function omits a tail-energy term, which reads up
  to 3 % sharp on 25 ms frames.

All features are float32. librosa is only the reference the tests compare against; it is not imported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import scipy.fft

from events.catalogue import FeatureSummary
from models import _feature_kernels as kernels

__all__ = [
    "FeatureConfig",
    "FeatureSummary",
    "FrameFeatures",
    "StreamingFeatureExtractor",
    "extract_features",
    "log_mel",
    "summarize",
]

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]

LOG_MEL_OFFSET = 1e-6
FLATNESS_POWER_FLOOR = 1e-10
ZERO_CROSSING_THRESHOLD = 1e-10
# Frames per kernel call: bounds the scratch memory (well under 1 MB) yet amortises the per-call overhead.
BLOCK_FRAMES = 128


@dataclass(frozen=True, kw_only=True)
class FeatureConfig:
    """Every parameter of the feature definitions; frozen and hashable, so derived tables cache per config."""

    sample_rate: int = 16000
    win_length: int = 400
    hop_length: int = 160
    n_fft: int = 512
    n_mels: int = 64
    fmin: float = 125.0
    fmax: float = 7500.0
    n_mfcc: int = 13
    rolloff_percent: float = 0.85
    dbfs_floor: float = -100.0
    # YIN searches periods within one analysis window; 85 Hz keeps two periods inside a 400-sample frame.
    yin_fmin: float = 85.0
    # Screams reach fundamentals well above speech, so the search goes up to 2 kHz.
    yin_fmax: float = 2000.0
    # Above YIN's usual 0.1, which marks fewer voiced frames on 25 ms windows of speech (36 % instead of 44 %
    # of espeak-ng's frames above -35 dBFS); white noise stays unvoiced at 0.15.
    yin_threshold: float = 0.15
    # The log-mel of YAMNet's front end (models.yamnet) sums magnitudes, not powers, into the mel bands and adds
    # 0.001: ``ln(mel @ |X| + 0.001)``. The defaults are the log-mel defined above, which our classifier uses.
    mel_of_magnitude: bool = False
    log_mel_offset: float = LOG_MEL_OFFSET

    def __post_init__(self) -> None:
        for name in ("sample_rate", "win_length", "hop_length", "n_fft", "n_mels", "n_mfcc"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"FeatureConfig.{name} must be a positive int, got {value!r}")
        nyquist = self.sample_rate / 2
        if self.win_length > self.n_fft:
            raise ValueError(f"FeatureConfig.win_length={self.win_length} exceeds n_fft={self.n_fft}")
        if not 0 <= self.fmin < self.fmax <= nyquist:
            raise ValueError(f"FeatureConfig needs 0 <= fmin < fmax <= {nyquist}, got {self.fmin}, {self.fmax}")
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"FeatureConfig.n_mfcc={self.n_mfcc} exceeds n_mels={self.n_mels}")
        if not 0 < self.rolloff_percent < 1:
            raise ValueError(f"FeatureConfig.rolloff_percent must be in (0, 1), got {self.rolloff_percent}")
        if not math.isfinite(self.dbfs_floor) or self.dbfs_floor >= 0:
            raise ValueError(f"FeatureConfig.dbfs_floor must be a negative number, got {self.dbfs_floor}")
        if not 0 < self.yin_fmin < self.yin_fmax <= nyquist:
            raise ValueError(
                f"FeatureConfig needs 0 < yin_fmin < yin_fmax <= {nyquist}, got {self.yin_fmin}, {self.yin_fmax}"
            )
        if self.sample_rate / self.yin_fmin >= self.win_length - 1:
            raise ValueError(
                f"FeatureConfig.yin_fmin={self.yin_fmin} Hz has a period longer than the "
                f"{self.win_length}-sample window; raise it above "
                f"{self.sample_rate / (self.win_length - 1):.1f} Hz"
            )
        if self.yin_max_period - self.yin_min_period < 2:
            raise ValueError("FeatureConfig.yin_fmin and yin_fmax must span at least three lags")
        if not 0 < self.yin_threshold < 1:
            raise ValueError(f"FeatureConfig.yin_threshold must be in (0, 1), got {self.yin_threshold}")
        if not (math.isfinite(self.log_mel_offset) and self.log_mel_offset > 0):
            raise ValueError(f"FeatureConfig.log_mel_offset must be a positive number, got {self.log_mel_offset}")

    @property
    def yin_min_period(self) -> int:
        return math.floor(self.sample_rate / self.yin_fmax)

    @property
    def yin_max_period(self) -> int:
        return min(math.ceil(self.sample_rate / self.yin_fmin), self.win_length - 1)

    def frames_in(self, n_samples: int) -> int:
        """How many complete frames a signal of ``n_samples`` holds."""
        return 0 if n_samples < self.win_length else 1 + (n_samples - self.win_length) // self.hop_length


@dataclass(frozen=True, kw_only=True)
class FrameFeatures:
    """Per-frame features of consecutive frames ``first_frame, first_frame + 1, ...`` of one stream."""

    first_frame: int
    log_mel: Float32Array
    mfcc: Float32Array
    rms: Float32Array
    dbfs: Float32Array
    zcr: Float32Array
    centroid: Float32Array
    rolloff: Float32Array
    flux: Float32Array
    flatness: Float32Array
    pitch_hz: Float32Array
    voicing: Float32Array

    @property
    def n_frames(self) -> int:
        return int(self.rms.shape[0])


@dataclass(frozen=True)
class _Tables:
    """Arrays derived once per config: window, mel filterbank (with each band's non-zero bin range), DCT."""

    window: Float32Array
    bin_hz: Float64Array
    mel_weights: Float64Array
    mel_first_bin: npt.NDArray[np.int64]
    mel_stop_bin: npt.NDArray[np.int64]
    dct: Float64Array
    silence_rms: float


def _hz_to_mel_htk(hz: Float64Array) -> Float64Array:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz_htk(mel: Float64Array) -> Float64Array:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def _mel_filterbank(config: FeatureConfig, bin_hz: Float64Array) -> Float64Array:
    """Triangular HTK mel filters without area normalisation, as librosa.filters.mel(htk=True, norm=None)."""
    mel_edges = np.linspace(
        _hz_to_mel_htk(np.array(config.fmin)), _hz_to_mel_htk(np.array(config.fmax)), config.n_mels + 2
    )
    hz_edges = _mel_to_hz_htk(mel_edges)
    widths = np.diff(hz_edges)
    ramps = hz_edges[:, np.newaxis] - bin_hz[np.newaxis, :]
    rising = -ramps[:-2] / widths[:-1, np.newaxis]
    falling = ramps[2:] / widths[1:, np.newaxis]
    weights: Float64Array = np.maximum(0.0, np.minimum(rising, falling))
    return weights


def _dct_ortho(n_out: int, n_in: int) -> Float64Array:
    """Rows of the orthonormal DCT-II matrix (scipy.fft.dct(type=2, norm="ortho"))."""
    k = np.arange(n_out)[:, np.newaxis]
    n = np.arange(n_in)[np.newaxis, :]
    matrix: Float64Array = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    matrix[0] /= np.sqrt(2.0)
    return matrix


@lru_cache(maxsize=8)
def _tables(config: FeatureConfig) -> _Tables:
    n = np.arange(config.win_length)
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / config.win_length)).astype(np.float32)  # periodic Hann
    bin_hz = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
    weights = _mel_filterbank(config, bin_hz)
    nonzero = weights > 0
    if not nonzero.any(axis=1).all():
        empty = int(np.flatnonzero(~nonzero.any(axis=1))[0])
        raise ValueError(f"mel band {empty} covers no FFT bin: lower n_mels or raise n_fft")
    first_bin = nonzero.argmax(axis=1).astype(np.int64)
    stop_bin = (weights.shape[1] - nonzero[:, ::-1].argmax(axis=1)).astype(np.int64)
    return _Tables(
        window=window,
        bin_hz=bin_hz,
        mel_weights=np.ascontiguousarray(weights),
        mel_first_bin=first_bin,
        mel_stop_bin=stop_bin,
        dct=_dct_ortho(config.n_mfcc, config.n_mels),
        silence_rms=10.0 ** (config.dbfs_floor / 20.0),
    )


def _validated_signal(signal: object, what: str) -> Float32Array:
    """A contiguous float32 copy or view of a finite 1-D float signal, else an error saying what is wrong."""
    if not isinstance(signal, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, got {type(signal).__name__}")
    if signal.ndim != 1:
        raise ValueError(f"{what} must be mono (1-D), got shape {signal.shape}")
    if not np.issubdtype(signal.dtype, np.floating):
        raise ValueError(
            f"{what} must be floating point in [-1, 1], got dtype {signal.dtype} (scale integer PCM first)"
        )
    samples = np.ascontiguousarray(signal, dtype=np.float32)
    if not np.isfinite(samples).all():
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise ValueError(f"{what} holds {bad} non-finite samples (NaN or infinity)")
    return samples


class StreamingFeatureExtractor:
    """Features of a stream fed in chunks of any size, identical to ``extract_features`` on the whole stream.

    It keeps the samples of the next, not yet complete frame and the last frame's log-mel (for flux).
    Not thread-safe: one extractor per stream.
    """

    def __init__(self, config: FeatureConfig = FeatureConfig()) -> None:
        self.config = config
        self._tables = _tables(config)
        self._window_buffer = np.zeros((BLOCK_FRAMES, config.n_fft), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next sample pushed is sample 0 of a new stream."""
        self._pending = np.zeros(0, dtype=np.float32)
        self._next_frame = 0
        self._previous_log_mel = np.zeros(self.config.n_mels)
        self._has_previous = False

    def push(self, chunk: npt.NDArray[np.floating]) -> FrameFeatures:
        """The frames completed by ``chunk`` (possibly none), which continues the samples pushed so far."""
        return self._push(chunk, with_pitch=True)

    def push_log_mel(self, chunk: npt.NDArray[np.floating]) -> FrameFeatures:
        """As :meth:`push` without the pitch track (YIN, the costliest feature): for a second log-mel computed
        beside another extractor's full features."""
        return self._push(chunk, with_pitch=False)

    def _push(self, chunk: npt.NDArray[np.floating], *, with_pitch: bool) -> FrameFeatures:
        samples = _validated_signal(chunk, "audio chunk")
        buffer = np.concatenate((self._pending, samples)) if self._pending.size else samples
        n_frames = self.config.frames_in(buffer.shape[0])
        features = self._compute(buffer, n_frames, with_pitch)
        consumed = n_frames * self.config.hop_length
        self._pending = buffer[consumed:].copy()
        self._next_frame += n_frames
        return features

    def _compute(self, buffer: Float32Array, n_frames: int, with_pitch: bool) -> FrameFeatures:
        config, tables = self.config, self._tables
        mels = np.empty((n_frames, config.n_mels), dtype=np.float32)
        mfcc = np.empty((n_frames, config.n_mfcc), dtype=np.float32)
        rms, dbfs, zcr, centroid, rolloff, flux, flatness, pitch_hz, voicing = np.empty((9, n_frames), np.float32)
        for block_start in range(0, n_frames, BLOCK_FRAMES):
            block = slice(block_start, min(block_start + BLOCK_FRAMES, n_frames))
            block_frames = block.stop - block_start
            windowed = self._window_buffer[:block_frames]
            kernels.time_domain(
                buffer[block_start * config.hop_length :],
                block_frames,
                config.hop_length,
                tables.window,
                ZERO_CROSSING_THRESHOLD,
                tables.silence_rms,
                config.yin_min_period,
                config.yin_max_period,
                config.yin_threshold,
                float(config.sample_rate),
                with_pitch,
                windowed,
                rms[block],
                dbfs[block],
                zcr[block],
                pitch_hz[block],
                voicing[block],
            )
            spectrum = scipy.fft.rfft(windowed, axis=1)
            mel_energy = np.empty((config.n_mels, block_frames))
            kernels.spectral(
                spectrum,
                tables.bin_hz,
                tables.mel_weights,
                tables.mel_first_bin,
                tables.mel_stop_bin,
                config.mel_of_magnitude,
                config.log_mel_offset,
                config.rolloff_percent,
                FLATNESS_POWER_FLOOR,
                mel_energy,
                centroid[block],
                rolloff[block],
                flatness[block],
            )
            kernels.cepstrum_and_flux(
                np.log(mel_energy, out=mel_energy),
                tables.dct,
                self._previous_log_mel,
                self._has_previous,
                mels[block],
                mfcc[block],
                flux[block],
            )
            self._has_previous = True
        return FrameFeatures(
            first_frame=self._next_frame,
            log_mel=mels,
            mfcc=mfcc,
            rms=rms,
            dbfs=dbfs,
            zcr=zcr,
            centroid=centroid,
            rolloff=rolloff,
            flux=flux,
            flatness=flatness,
            pitch_hz=pitch_hz,
            voicing=voicing,
        )


def extract_features(signal: npt.NDArray[np.floating], config: FeatureConfig = FeatureConfig()) -> FrameFeatures:
    """Features of every complete frame of a whole signal (mono float, ``config.sample_rate``)."""
    return StreamingFeatureExtractor(config).push(signal)


def log_mel(signal: npt.NDArray[np.floating], config: FeatureConfig = FeatureConfig()) -> Float32Array:
    """The (n_frames, n_mels) log-mel spectrogram alone, for training and running the sound classifier.

    It skips YIN, half of the work of ``extract_features``, since training computes it for every clip.
    """
    return StreamingFeatureExtractor(config)._push(signal, with_pitch=False).log_mel


def summarize(frames: FrameFeatures, config: FeatureConfig = FeatureConfig()) -> FeatureSummary:
    """Chunk-level statistics of a run of frames; an empty run reads as silence (floor dBFS, unvoiced)."""
    if frames.n_frames == 0:
        floor = float(config.dbfs_floor)
        return FeatureSummary(
            rms_dbfs_mean=floor,
            rms_dbfs_max=floor,
            zcr_mean=0.0,
            centroid_hz_mean=0.0,
            rolloff_hz_mean=0.0,
            flux_mean=0.0,
            flatness_mean=0.0,
            pitch_hz_median=0.0,
            voiced_fraction=0.0,
        )
    voiced = frames.pitch_hz[frames.pitch_hz > 0]
    return FeatureSummary(
        rms_dbfs_mean=float(frames.dbfs.mean()),
        rms_dbfs_max=float(frames.dbfs.max()),
        zcr_mean=float(frames.zcr.mean()),
        centroid_hz_mean=float(frames.centroid.mean()),
        rolloff_hz_mean=float(frames.rolloff.mean()),
        flux_mean=float(frames.flux.mean()),
        flatness_mean=float(frames.flatness.mean()),
        pitch_hz_median=float(np.median(voiced)) if voiced.size else 0.0,
        voiced_fraction=float(voiced.size / frames.n_frames),
    )
