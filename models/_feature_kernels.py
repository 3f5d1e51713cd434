"""Numba kernels behind ``models.features``: blocks of frames per call, no Python in the per-frame loops.

Every kernel computes each frame with the same operations in the same order however many frames it is given
and wherever the frame sits in the block (the one cross-frame input, the previous log-mel row for flux, is
passed in explicitly). That is what makes a stream processed chunk by chunk bit-identical to the whole signal.
For the same reason there is no ``fastmath``: a reassociated (vectorised) sum could start at a different
element depending on a row's memory alignment, and fused multiply-adds could be chosen differently where the
same helper is inlined twice.

SIMD comes from the data layout instead. Per-frame sums over bins (spectral sums, mel bands, MFCC, flux) run
with the frames across the vector lanes: arrays are laid out (bin, frame), the loop over frames is innermost,
and each frame still adds its terms one by one in bin order. YIN's cross-correlation, the bulk of the work,
puts lags across the lanes instead: there each frame is an independent sum per lag.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

FloatArray = np.ndarray
# Bins per block for flatness: the product of 16 floored powers times a mantissa in [1, 2) stays inside
# float64's normal range (1e-160 at the 1e-10 floor; below 1e308 for any power under 1e19, i.e. samples within
# +-1e7, far beyond full scale), so the exponent needs moving aside only once per block.
_BLOCK = 16


@njit(cache=True, nogil=True)
def _add_cross_correlation(frame: FloatArray, start: int, stop: int, cross: FloatArray) -> None:
    """cross[k] += sum_{start <= j < stop} y[j] y[j+k], in float32.

    The lag loop is innermost (no reduction, so it vectorises) and four samples are folded per pass over it:
    a quarter of the loads and stores of ``cross`` for the same arithmetic. The order of the additions depends
    only on ``stop - start``, so the same rows give the same sums wherever they sit in the frame.
    """
    n_lags = cross.shape[0]
    # Index a view from `start` with a counter from 0: numba can then prove every index non-negative and drop
    # its negative-index wraparound, which would otherwise stop the loop from vectorising.
    samples = frame[start:]
    count = stop - start
    j = 0
    while j + 4 <= count:
        s0 = samples[j]
        s1 = samples[j + 1]
        s2 = samples[j + 2]
        s3 = samples[j + 3]
        for k in range(n_lags):
            cross[k] += (s0 * samples[j + k] + s1 * samples[j + 1 + k]) + (
                s2 * samples[j + 2 + k] + s3 * samples[j + 3 + k]
            )
        j += 4
    if j + 2 <= count:  # at most one pair and one single row left: fewer passes over `cross`
        s0 = samples[j]
        s1 = samples[j + 1]
        for k in range(n_lags):
            cross[k] += s0 * samples[j + k] + s1 * samples[j + 1 + k]
        j += 2
    if j < count:
        s0 = samples[j]
        for k in range(n_lags):
            cross[k] += s0 * samples[j + k]


@njit(cache=True, nogil=True)
def _sum_of_squares(values: FloatArray, start: int, stop: int) -> float:
    """Sum of squares in float64 with four accumulators: a fixed order that still runs four adds at a time."""
    a0 = a1 = a2 = a3 = 0.0
    i = start
    while i + 4 <= stop:
        v0 = np.float64(values[i])
        v1 = np.float64(values[i + 1])
        v2 = np.float64(values[i + 2])
        v3 = np.float64(values[i + 3])
        a0 += v0 * v0
        a1 += v1 * v1
        a2 += v2 * v2
        a3 += v3 * v3
        i += 4
    while i < stop:
        v0 = np.float64(values[i])
        a0 += v0 * v0
        i += 1
    return (a0 + a1) + (a2 + a3)


@njit(cache=True, nogil=True)
def _cross_correlation(
    frame: FloatArray,
    hop_length: int,
    share_rows: bool,
    have_head: bool,
    head: FloatArray,
    next_head: FloatArray,
    cross: FloatArray,
) -> None:
    """YIN's cross[k] = sum_{j<W} y[j] y[j+k] of one frame, W = len(frame) - max_period, in float32.

    Consecutive integration windows overlap when W > hop: rows [hop, W) of frame i are rows [0, W - hop) of
    frame i+1. With hop < W <= 2 hop (``share_rows``) the window splits into a head [0, W - hop), a body
    [W - hop, hop) and the next frame's head, which is left in ``next_head``; ``head`` must hold this frame's
    head when ``have_head``. Every product row is then computed once instead of W / hop times on average, and
    a head computed by the previous frame equals a fresh one (same rows, same code), wherever a chunk starts.
    """
    integration = frame.shape[0] - (cross.shape[0] - 1)
    if not share_rows:
        cross[:] = 0.0
        _add_cross_correlation(frame, 0, integration, cross)
        return
    if not have_head:
        head[:] = 0.0
        _add_cross_correlation(frame, 0, integration - hop_length, head)
    cross[:] = head
    _add_cross_correlation(frame, integration - hop_length, hop_length, cross)
    next_head[:] = 0.0
    _add_cross_correlation(frame, hop_length, integration, next_head)
    for k in range(cross.shape[0]):
        cross[k] += next_head[k]


@njit(cache=True, nogil=True)
def _yin_choice(cmnd: FloatArray, min_period: int, trough_threshold: float, sample_rate: float) -> tuple[float, float]:
    """(pitch in Hz or 0 when unvoiced, voicing) from one frame's CMND over lags min_period, min_period + 1...

    The first trough below the threshold (troughs as librosa.yin defines them at the ends) refined by
    parabolic interpolation; without one the frame is unvoiced and its voicing comes from the global minimum.
    """
    n_lags = cmnd.shape[0]
    for i in range(n_lags):
        if cmnd[i] >= trough_threshold:
            continue
        if i == 0:
            is_trough = cmnd[0] < cmnd[1]
        elif i == n_lags - 1:
            is_trough = cmnd[i] < cmnd[i - 1]
        else:
            is_trough = cmnd[i] < cmnd[i - 1] and cmnd[i] <= cmnd[i + 1]
        if not is_trough:
            continue
        shift = 0.0
        if 0 < i < n_lags - 1:
            curvature = cmnd[i + 1] + cmnd[i - 1] - 2.0 * cmnd[i]
            slope = (cmnd[i + 1] - cmnd[i - 1]) / 2.0
            if abs(slope) < abs(curvature):
                shift = -slope / curvature
        return sample_rate / (min_period + i + shift), min(max(1.0 - cmnd[i], 0.0), 1.0)
    return 0.0, min(max(1.0 - cmnd.min(), 0.0), 1.0)


@njit(cache=True, nogil=True)
def _yin_frame(
    frame: FloatArray,
    window_energy: float,
    cross: FloatArray,
    min_period: int,
    trough_threshold: float,
    sample_rate: float,
    difference: FloatArray,
    running: FloatArray,
    cmnd: FloatArray,
) -> tuple[float, float]:
    """(pitch in Hz or 0, voicing) of one frame from its cross-correlation and integration-window energy.

    ``difference``, ``running`` and ``cmnd`` are scratch arrays sized by the lag range.
    """
    max_period = cross.shape[0] - 1
    integration = frame.shape[0] - max_period
    # d(k) = e(0) + e(k) - 2 cross(k), with e(k) the energy of y[k : k+W] slid one sample per lag (float64).
    lagged_energy = window_energy
    running_sum = 0.0
    for k in range(1, max_period + 1):
        leaving = np.float64(frame[k - 1])
        entering = np.float64(frame[k + integration - 1])
        lagged_energy += entering * entering - leaving * leaving
        value = window_energy + lagged_energy - 2.0 * np.float64(cross[k])
        running_sum += value
        difference[k] = value
        running[k] = running_sum
    # CMND d(k) / (mean of d(1..k)); a separate loop without dependencies so that the divisions vectorise.
    tiny = np.finfo(np.float64).tiny
    for k in range(min_period, max_period + 1):
        cmnd[k - min_period] = difference[k] * k / (running[k] + k * tiny)
    return _yin_choice(cmnd, min_period, trough_threshold, sample_rate)


@njit(cache=True, nogil=True)
def time_domain(
    signal: FloatArray,
    n_frames: int,
    hop_length: int,
    window: FloatArray,
    zero_threshold: float,
    dbfs_floor_rms: float,
    min_period: int,
    max_period: int,
    trough_threshold: float,
    sample_rate: float,
    with_pitch: bool,
    windowed_frames: FloatArray,
    rms: FloatArray,
    dbfs: FloatArray,
    zcr: FloatArray,
    pitch_hz: FloatArray,
    voicing: FloatArray,
) -> None:
    """Per frame: the windowed copy for the FFT, RMS, dBFS, zero-crossing rate, and YIN pitch with voicing.

    ``windowed_frames`` is (n_frames, n_fft) with its columns past the window length already zero: the frame
    is zero-padded at the end, which changes only the phase of the spectrum, not its magnitude.

    YIN is the classic algorithm (de Cheveigne and Kawahara 2002, steps 2-5) with a fixed integration window
    of W = ``win - max_period`` samples, so every lag compares equally many samples inside the frame: the
    difference d(k) = e(0) + e(k) - 2 cross(k), e(k) the energy of y[k : k+W], normalised by its running mean
    (CMND). A frame is voiced when the CMND has a trough below the threshold; its pitch is then YIN's
    parabolically refined estimate, otherwise 0. ``voicing`` is 1 - CMND at the chosen lag (the first such
    trough, else the global minimum), clipped to [0, 1]. Frames at or below the dBFS floor are unvoiced with
    voicing 0, because the CMND of silence is 0/0. Without ``with_pitch`` YIN is skipped (pitch, voicing 0).
    """
    win_length = window.shape[0]
    integration = win_length - max_period
    share_rows = hop_length < integration <= 2 * hop_length
    head = np.zeros(max_period + 1, dtype=np.float32)
    next_head = np.zeros(max_period + 1, dtype=np.float32)
    cross = np.empty(max_period + 1, dtype=np.float32)
    have_head = False
    difference = np.empty(max_period + 1)
    running = np.empty(max_period + 1)
    cmnd = np.empty(max_period - min_period + 1)
    for index in range(n_frames):
        frame = signal[index * hop_length : index * hop_length + win_length]
        for offset in range(win_length):
            windowed_frames[index, offset] = frame[offset] * window[offset]
        # Values within +-threshold count as zero (positive), as in librosa.zero_crossings. An integer sum:
        # the loop vectorises.
        crossings = 0
        for offset in range(1, win_length):
            crossings += (frame[offset] < -zero_threshold) != (frame[offset - 1] < -zero_threshold)
        window_energy = _sum_of_squares(frame, 0, integration)
        frame_rms = np.sqrt((window_energy + _sum_of_squares(frame, integration, win_length)) / win_length)
        rms[index] = frame_rms
        dbfs[index] = 20.0 * np.log10(max(frame_rms, dbfs_floor_rms))
        zcr[index] = crossings / win_length
        if frame_rms <= dbfs_floor_rms or not with_pitch:
            pitch_hz[index] = 0.0
            voicing[index] = 0.0
            have_head = False
            continue
        _cross_correlation(frame, hop_length, share_rows, have_head, head, next_head, cross)
        head, next_head = next_head, head
        have_head = share_rows
        pitch_hz[index], voicing[index] = _yin_frame(
            frame, window_energy, cross, min_period, trough_threshold, sample_rate, difference, running, cmnd
        )


@njit(cache=True, nogil=True)
def spectral(
    spectrum: np.ndarray,
    bin_hz: FloatArray,
    mel_weights: FloatArray,
    mel_first_bin: np.ndarray,
    mel_stop_bin: np.ndarray,
    mel_of_magnitude: bool,
    log_offset: float,
    rolloff_fraction: float,
    flatness_floor: float,
    mel_energy: FloatArray,
    centroid: FloatArray,
    rolloff: FloatArray,
    flatness: FloatArray,
) -> None:
    """From the complex spectrum of each frame: centroid, roll-off, flatness and the mel energies plus the log
    offset, written as (n_mels, n_frames) for ``cepstrum_and_flux``.

    Powers are float64, magnitudes float32 square roots (of a float32 FFT), all sums float64. The logarithm of
    the mel energies is left to numpy, whose SIMD log is far faster than a scalar one. The mel filterbank is
    applied band by band over its non-zero bins only (1 to 17 of the 257 bins per band). Flatness needs the
    mean log power: the floored powers are multiplied together, the product's binary exponent moved aside
    every ``_BLOCK`` bins (exact bit operations), and a single log taken per frame. The mel bands sum power,
    or magnitude when ``mel_of_magnitude`` (YAMNet's front end).
    """
    n_frames, n_bins = spectrum.shape
    n_mels = mel_weights.shape[0]
    power = np.empty((n_bins, n_frames))
    magnitude = np.empty((n_bins, n_frames), dtype=np.float32)
    for k in range(n_bins):
        for frame in range(n_frames):
            value = spectrum[frame, k]
            real = np.float64(value.real)
            imag = np.float64(value.imag)
            power[k, frame] = real * real + imag * imag
    magnitude_sum = np.zeros(n_frames)
    weighted_hz = np.zeros(n_frames)
    power_sum = np.zeros(n_frames)
    product = np.ones(n_frames)
    product_bits = product.view(np.int64)
    exponent_sum = np.zeros(n_frames, dtype=np.int64)
    for block_start in range(0, n_bins, _BLOCK):
        for k in range(block_start, min(block_start + _BLOCK, n_bins)):
            hz = bin_hz[k]
            for frame in range(n_frames):
                magnitude[k, frame] = np.sqrt(np.float32(power[k, frame]))
            for frame in range(n_frames):
                bin_magnitude = np.float64(magnitude[k, frame])
                magnitude_sum[frame] += bin_magnitude
                weighted_hz[frame] += bin_magnitude * hz
                floored = max(power[k, frame], flatness_floor)
                power_sum[frame] += floored
                product[frame] *= floored
        for frame in range(n_frames):  # product = mantissa * 2^exponent: keep the mantissa in [1, 2)
            bits = product_bits[frame]
            exponent_sum[frame] += ((bits >> 52) & 0x7FF) - 1023
            product_bits[frame] = (bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000

    # Roll-off: the lowest bin whose cumulative magnitude reaches the fraction of the total, i.e. the number
    # of bins whose cumulative magnitude stays below it (it never decreases), counted without branches.
    threshold = rolloff_fraction * magnitude_sum
    cumulative = np.zeros(n_frames)
    below = np.zeros(n_frames, dtype=np.int64)
    for k in range(n_bins):
        for frame in range(n_frames):
            cumulative[frame] += magnitude[k, frame]
            below[frame] += cumulative[frame] < threshold[frame]
    log_two = math.log(2.0)
    for frame in range(n_frames):
        total = magnitude_sum[frame]
        centroid[frame] = weighted_hz[frame] / total if total > 0.0 else 0.0
        log_power_mean = (math.log(product[frame]) + exponent_sum[frame] * log_two) / n_bins
        flatness[frame] = math.exp(log_power_mean) / (power_sum[frame] / n_bins)
        rolloff[frame] = bin_hz[min(below[frame], n_bins - 1)]

    for m in range(n_mels):
        band = mel_energy[m]
        band[:] = 0.0
        for k in range(mel_first_bin[m], mel_stop_bin[m]):
            weight = mel_weights[m, k]
            if mel_of_magnitude:
                for frame in range(n_frames):
                    band[frame] += weight * np.float64(magnitude[k, frame])
            else:
                for frame in range(n_frames):
                    band[frame] += weight * power[k, frame]
        for frame in range(n_frames):
            band[frame] += log_offset


@njit(cache=True, nogil=True)
def cepstrum_and_flux(
    log_mel_by_band: FloatArray,
    dct: FloatArray,
    previous_log_mel: FloatArray,
    has_previous: bool,
    log_mel: FloatArray,
    mfcc: FloatArray,
    flux: FloatArray,
) -> None:
    """MFCC (DCT of the log-mel), flux (mean rise of the log-mel) and the float32 log-mel of each frame.

    ``log_mel_by_band`` is (n_mels, n_frames). ``previous_log_mel`` holds the last frame of the previous call
    and is overwritten with this call's last frame.
    """
    n_mels, n_frames = log_mel_by_band.shape
    n_mfcc = dct.shape[0]
    rising = np.zeros(n_frames)
    coefficients = np.zeros((n_mfcc, n_frames))
    for m in range(n_mels):
        band = log_mel_by_band[m]
        if has_previous:
            rising[0] += max(band[0] - previous_log_mel[m], 0.0)
        for frame in range(1, n_frames):
            rising[frame] += max(band[frame] - band[frame - 1], 0.0)
        previous_log_mel[m] = band[n_frames - 1]
        for c in range(n_mfcc):
            weight = dct[c, m]
            row = coefficients[c]
            for frame in range(n_frames):
                row[frame] += weight * band[frame]
        for frame in range(n_frames):
            log_mel[frame, m] = band[frame]
    for frame in range(n_frames):
        flux[frame] = rising[frame] / n_mels
        for c in range(n_mfcc):
            mfcc[frame, c] = coefficients[c, frame]
    if not has_previous:
        flux[0] = 0.0
