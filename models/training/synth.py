"""Procedural sound synthesis and augmentation for the distress training set.

No recordings of glass, crying or most screams ship in any package we may use, so these sounds are built from
physical and phonetic models (source-filter voices, modal resonators, decaying noise). Everything is driven by
a ``numpy.random.Generator`` so a seed reproduces every clip exactly. All signals are float32 mono at 16 kHz.

One module of ~520 lines: each generator is short and they share the envelope, noise and level helpers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from domain.audio import SAMPLE_RATE

NYQUIST_GUARD_HZ = 7_800.0

Audio = npt.NDArray[np.float32]
Rng = np.random.Generator

# Formant centre frequencies (Hz) and bandwidths of adult male vowels; other speakers scale them.
VOWEL_FORMANTS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "a": ((730.0, 1090.0, 2440.0), (90.0, 110.0, 170.0)),
    "ae": ((660.0, 1720.0, 2410.0), (80.0, 100.0, 160.0)),
    "e": ((530.0, 1840.0, 2480.0), (70.0, 100.0, 160.0)),
    "i": ((270.0, 2290.0, 3010.0), (60.0, 100.0, 170.0)),
    "o": ((570.0, 840.0, 2410.0), (80.0, 90.0, 160.0)),
    "u": ((300.0, 870.0, 2240.0), (60.0, 90.0, 150.0)),
    "uh": ((640.0, 1190.0, 2390.0), (80.0, 100.0, 160.0)),
}


def _as_audio(samples: npt.NDArray[np.floating]) -> Audio:
    return np.ascontiguousarray(samples, dtype=np.float32)


def rms(samples: npt.NDArray[np.floating]) -> float:
    """Root-mean-square level; zero for silence."""
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0


def normalise_peak(samples: npt.NDArray[np.floating], peak: float = 0.9) -> Audio:
    """Scale to a given peak so sources of different loudness start equal before gain augmentation."""
    top = float(np.max(np.abs(samples))) if samples.size else 0.0
    if top <= 1e-9:
        return _as_audio(samples)
    return _as_audio(samples * (peak / top))


def _envelope(n: int, attack_s: float, release_s: float) -> npt.NDArray[np.float64]:
    env = np.ones(n)
    attack = min(n, max(1, int(attack_s * SAMPLE_RATE)))
    release = min(n - attack, max(1, int(release_s * SAMPLE_RATE)))
    env[:attack] = np.linspace(0.0, 1.0, attack)
    if release > 0:
        env[n - release :] *= np.linspace(1.0, 0.0, release)
    return env


def _smooth_random_walk(rng: Rng, n: int, knots: int, scale: float) -> npt.NDArray[np.float64]:
    """A slowly varying random curve (linear interpolation of random knots), for jitter and drift."""
    points = rng.normal(0.0, scale, size=max(2, knots))
    return np.interp(np.linspace(0, len(points) - 1, n), np.arange(len(points)), points)


# ----------------------------------------------------------------------------------------------- noise beds


def coloured_noise(rng: Rng, n: int, exponent: float) -> Audio:
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown, -1 blue)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    freqs[0] = freqs[1] if n > 1 else 1.0
    spectrum *= freqs ** (-exponent / 2.0)
    return normalise_peak(np.fft.irfft(spectrum, n), 0.5)


def mains_hum(rng: Rng, n: int) -> Audio:
    """50/60 Hz hum with harmonics and a little broadband hiss, as from appliances and ground loops."""
    base = float(rng.choice([50.0, 60.0]))
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    for harmonic in range(1, int(rng.integers(3, 12))):
        out += rng.uniform(0.1, 1.0) / harmonic * np.sin(2 * np.pi * base * harmonic * t + rng.uniform(0, 2 * np.pi))
    out += 0.05 * rng.standard_normal(n)
    return normalise_peak(out, 0.5)


def music_like(rng: Rng, n: int) -> Audio:
    """Tonal music: chords and a melody of harmonic notes with ADSR envelopes and occasional soft percussion.

    Sung and played tones are the classic false alarm for scream detectors, so the background class needs
    them.
    """
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    tempo_s = rng.uniform(0.15, 0.6)
    root = 110.0 * 2 ** (rng.integers(0, 24) / 12)
    scales = ([0, 2, 4, 5, 7, 9, 11], [0, 2, 3, 5, 7, 8, 10], [0, 3, 5, 7, 10])
    scale = np.array(scales[int(rng.integers(0, len(scales)))])
    brightness = rng.uniform(0.3, 0.9)
    vibrato = rng.uniform(0.0, 0.01)
    start = 0.0
    while start < n / SAMPLE_RATE:
        duration = tempo_s * float(rng.choice([1, 1, 2, 3, 4]))
        degree = int(rng.integers(0, len(scale) * 2))
        octave, step = divmod(degree, len(scale))
        freq = root * 2 ** ((scale[step] + 12 * octave) / 12) * float(rng.choice([1, 2, 4]))
        chord = [freq] if rng.random() < 0.5 else [freq, freq * 2 ** (4 / 12), freq * 2 ** (7 / 12)]
        i0, i1 = int(start * SAMPLE_RATE), min(n, int((start + duration) * SAMPLE_RATE))
        if i1 - i0 > 16:
            seg_t = t[i0:i1] - start
            env = np.exp(-seg_t * rng.uniform(0.5, 6.0)) * _envelope(i1 - i0, 0.01, min(0.05, duration / 2))
            for note in chord:
                phase = 2 * np.pi * note * seg_t + vibrato * note / 5.0 * np.sin(2 * np.pi * 5.0 * seg_t)
                for k in range(1, 12):
                    if note * k >= NYQUIST_GUARD_HZ:
                        break
                    out[i0:i1] += env * brightness ** (k - 1) * np.sin(k * phase) / len(chord)
        if rng.random() < 0.25 and i1 - i0 > 400:  # a soft hi-hat-like tick on the beat
            tick = rng.standard_normal(400) * np.exp(-np.arange(400) / 60.0) * 0.15
            out[i0 : i0 + 400] += np.diff(tick, prepend=0.0)
        start += duration
    return normalise_peak(out, 0.5)


def room_tone(rng: Rng, n: int) -> Audio:
    """A mix of quiet beds (ventilation noise, hum, distant traffic rumble) typical of indoor microphones."""
    out = coloured_noise(rng, n, rng.uniform(0.5, 2.0)) * rng.uniform(0.3, 1.0)
    if rng.random() < 0.5:
        out = out + mains_hum(rng, n) * rng.uniform(0.05, 0.4)
    if rng.random() < 0.5:  # low-passed rumble that swells like passing traffic
        rumble = sps.sosfilt(
            sps.butter(2, rng.uniform(80, 300), "low", fs=SAMPLE_RATE, output="sos"), rng.standard_normal(n)
        )
        out = out + normalise_peak(rumble * _envelope(n, n / SAMPLE_RATE / 2, n / SAMPLE_RATE / 2), 0.4)
    return normalise_peak(out, 0.5)


# --------------------------------------------------------------------------------------------------- voices


def _formant_gain(
    freqs: npt.NDArray[np.float64], centres: npt.NDArray[np.float64], widths: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Magnitude of a cascade of second-order resonances evaluated at (time-varying) harmonic frequencies."""
    gain = np.ones_like(freqs)
    for centre, width in zip(centres, widths, strict=True):
        gain *= centre**2 / np.sqrt((centre**2 - freqs**2) ** 2 + (width * freqs) ** 2)
    return gain


def voiced_sound(
    rng: Rng,
    f0: npt.NDArray[np.float64],
    vowel: str,
    formant_scale: float,
    tilt_db_per_octave: float,
    breathiness: float,
    roughness: float,
) -> Audio:
    """Source-filter voice: harmonics of a time-varying F0 shaped by vowel formants, plus aspiration noise.

    ``roughness`` adds amplitude modulation and a subharmonic, the nonlinear phonation that makes screams
    harsh.
    """
    n = len(f0)
    centres_base, widths_base = VOWEL_FORMANTS[vowel]
    # F4 and F5 are nearly vowel-independent; they keep energy above 3 kHz where screams are bright.
    centres = np.array([*centres_base, 3400.0, 4400.0]) * formant_scale * rng.uniform(0.92, 1.08, size=5)
    widths = np.array([*widths_base, 250.0, 300.0]) * formant_scale * rng.uniform(1.0, 2.5)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    out = np.zeros(n)
    max_harmonics = int(NYQUIST_GUARD_HZ / max(40.0, float(np.min(f0))))
    slope = tilt_db_per_octave / 20.0 / np.log10(2.0)
    # Harmonic amplitudes change slowly, so evaluate the formant envelope every 2 ms and interpolate.
    coarse = np.arange(0, n, 32)
    for k in range(1, max_harmonics + 1):
        freqs = k * f0[coarse]
        if not np.any(freqs < NYQUIST_GUARD_HZ):
            break
        amp = k**slope * _formant_gain(freqs, centres, widths) * (freqs < NYQUIST_GUARD_HZ)
        out += np.interp(np.arange(n), coarse, amp) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    if roughness > 0:
        mod_hz = rng.uniform(25, 90)
        t = np.arange(n) / SAMPLE_RATE
        out *= 1.0 - roughness * 0.5 * (1 + np.sin(2 * np.pi * mod_hz * t + rng.uniform(0, 6.28)))
        sub = np.sin(0.5 * phase) * _formant_gain(0.5 * f0, centres, widths)
        out += roughness * 0.5 * sub * np.std(out) / max(1e-9, float(np.std(sub)))
    out = out / max(1e-9, float(np.std(out)))
    if breathiness > 0:
        noise = rng.standard_normal(n)
        sos = sps.butter(
            2,
            [max(200.0, centres[0] * 0.7), min(7000.0, centres[2] * 1.6)],
            "band",
            fs=SAMPLE_RATE,
            output="sos",
        )
        shaped = sps.sosfilt(sos, noise)
        out += breathiness * shaped / max(1e-9, float(np.std(shaped)))
    return _as_audio(out)


def _contour(
    rng: Rng, n: int, start_hz: float, peak_hz: float, end_hz: float, vibrato: float, jitter: float
) -> npt.NDArray[np.float64]:
    """An F0 contour rising to a peak then falling, with vibrato and slow jitter (fractions of F0)."""
    peak_at = rng.uniform(0.15, 0.6)
    x = np.linspace(0.0, 1.0, n)
    rising = start_hz + (peak_hz - start_hz) * np.sin(np.pi / 2 * np.minimum(x / peak_at, 1.0))
    falling = peak_hz + (end_hz - peak_hz) * (np.maximum(x - peak_at, 0.0) / (1 - peak_at)) ** rng.uniform(0.7, 2.0)
    base = np.where(x < peak_at, rising, falling)
    t = np.arange(n) / SAMPLE_RATE
    wobble = vibrato * np.sin(2 * np.pi * rng.uniform(4.0, 9.0) * t + rng.uniform(0, 6.28))
    drift = _smooth_random_walk(rng, n, max(2, n // 400), jitter)
    return np.clip(base * (1.0 + wobble + drift), 60.0, 3000.0)


def scream(rng: Rng, speaker: dict[str, float]) -> Audio:
    """One scream: high, loud, often rough phonation on an open vowel, 0.4-2 s long.

    ``speaker`` fixes the voice (pitch register, formant scale, roughness) so clips of one synthetic "person"
    share a source id and never straddle the train/validation split.
    """
    duration = rng.uniform(0.4, 2.0)
    n = int(duration * SAMPLE_RATE)
    peak = speaker["f0"] * rng.uniform(0.85, 1.3)
    f0 = _contour(
        rng,
        n,
        peak * rng.uniform(0.6, 0.95),
        peak,
        peak * rng.uniform(0.55, 1.0),
        vibrato=rng.uniform(0.0, 0.04),
        jitter=rng.uniform(0.005, 0.03),
    )
    vowel = str(rng.choice(["a", "ae", "a", "e", "i", "o", "uh"]))
    voice = voiced_sound(
        rng,
        f0,
        vowel,
        speaker["formant_scale"] * rng.uniform(1.0, 1.15),
        tilt_db_per_octave=rng.uniform(-6.0, -2.0),
        breathiness=rng.uniform(0.02, 0.25),
        roughness=speaker["roughness"] * rng.uniform(0.5, 1.5),
    )
    env = _envelope(n, rng.uniform(0.02, 0.15), rng.uniform(0.05, 0.4))
    return normalise_peak(voice * env)


def cry(rng: Rng, speaker: dict[str, float]) -> Audio:
    """Crying: a train of wailing cry units (infant) or short sobs (adult) separated by audible in-breaths."""
    infant = speaker["f0"] > 330
    total = rng.uniform(1.2, 2.5)
    n_total = int(total * SAMPLE_RATE)
    out = np.zeros(n_total)
    pos = int(rng.uniform(0.0, 0.3) * SAMPLE_RATE)
    while pos < n_total - 800:
        unit_s = rng.uniform(0.35, 1.3) if infant else rng.uniform(0.08, 0.45)
        n = min(int(unit_s * SAMPLE_RATE), n_total - pos)
        base = speaker["f0"] * rng.uniform(0.85, 1.15)
        if infant:
            f0 = _contour(
                rng,
                n,
                base * 0.85,
                base * rng.uniform(1.05, 1.4),
                base * 0.75,
                vibrato=rng.uniform(0.01, 0.05),
                jitter=rng.uniform(0.01, 0.04),
            )
        else:  # a sob falls in pitch and is often broken into a quaver
            f0 = _contour(
                rng,
                n,
                base * 1.2,
                base * 1.25,
                base * 0.8,
                vibrato=rng.uniform(0.03, 0.1),
                jitter=rng.uniform(0.01, 0.04),
            )
        vowel = str(rng.choice(["a", "ae", "uh", "e", "u"]))
        unit = voiced_sound(
            rng,
            f0,
            vowel,
            speaker["formant_scale"],
            tilt_db_per_octave=rng.uniform(-9.0, -4.0),
            breathiness=rng.uniform(0.03, 0.3),
            roughness=speaker["roughness"] * rng.uniform(0, 1),
        )
        unit *= _envelope(n, rng.uniform(0.02, 0.08), rng.uniform(0.03, 0.2))
        if not infant and rng.random() < 0.5:  # the "huh-huh-huh" tremor of sobbing
            t = np.arange(n) / SAMPLE_RATE
            unit *= 0.5 + 0.5 * np.abs(np.sin(np.pi * rng.uniform(4, 9) * t))
        out[pos : pos + n] += unit
        pos += n
        breath_n = int(rng.uniform(0.1, 0.5) * SAMPLE_RATE)
        breath_n = min(breath_n, n_total - pos)
        if breath_n > 100:  # in-breath: band-passed noise, sometimes a high voiced squeak
            sos = sps.butter(2, [rng.uniform(500, 1500), rng.uniform(3000, 6000)], "band", fs=SAMPLE_RATE, output="sos")
            breath = sps.sosfilt(sos, rng.standard_normal(breath_n)) * _envelope(breath_n, 0.05, 0.05)
            out[pos : pos + breath_n] += breath * rng.uniform(0.02, 0.15) / max(1e-9, float(np.std(breath)))
            pos += breath_n
    return normalise_peak(out)


def random_voice(rng: Rng, kind: str) -> dict[str, float]:
    """Parameters of one synthetic speaker: 'adult_male', 'adult_female', 'child' or 'infant'."""
    registers = {
        "adult_male": (250.0, 650.0, 1.0),
        "adult_female": (450.0, 1300.0, 1.17),
        "child": (600.0, 1600.0, 1.3),
        "infant": (350.0, 650.0, 1.45),
    }
    low, high, scale = registers[kind]
    return {
        "f0": float(rng.uniform(low, high)),
        "formant_scale": scale * float(rng.uniform(0.93, 1.07)),
        "roughness": float(rng.uniform(0.0, 0.7)),
    }


def sob_voice(rng: Rng) -> dict[str, float]:
    """An adult crier: F0 in the raised speaking range (sobs are lower than screams)."""
    female = rng.random() < 0.5
    return {
        "f0": float(rng.uniform(230, 330) if female else rng.uniform(130, 240)),
        "formant_scale": float(rng.uniform(1.1, 1.2) if female else rng.uniform(0.95, 1.05)),
        "roughness": float(rng.uniform(0.0, 0.4)),
    }


# -------------------------------------------------------------------------------------------------- impacts


def _decaying_noise(rng: Rng, n: int, decay_s: float) -> npt.NDArray[np.float64]:
    return rng.standard_normal(n) * np.exp(-np.arange(n) / (decay_s * SAMPLE_RATE))


def gunshot(rng: Rng) -> Audio:
    """Muzzle blast: an almost instant broadband crack, a low N-wave thump and a noisy echoing tail."""
    n = int(rng.uniform(0.4, 1.0) * SAMPLE_RATE)
    crack = _decaying_noise(rng, n, rng.uniform(0.002, 0.01))
    thump_len = int(rng.uniform(0.004, 0.02) * SAMPLE_RATE)
    crack[:thump_len] += np.linspace(1.0, -1.0, thump_len) * rng.uniform(1.0, 3.0)
    tail = sps.sosfilt(
        sps.butter(2, rng.uniform(800, 4000), "low", fs=SAMPLE_RATE, output="sos"),
        _decaying_noise(rng, n, rng.uniform(0.05, 0.3)),
    )
    return normalise_peak(crack + tail * rng.uniform(0.1, 0.5))


def explosion(rng: Rng) -> Audio:
    """A big low-frequency boom with a long rumbling, crackling decay."""
    n = int(rng.uniform(0.8, 2.0) * SAMPLE_RATE)
    boom = sps.sosfilt(
        sps.butter(2, rng.uniform(150, 600), "low", fs=SAMPLE_RATE, output="sos"),
        _decaying_noise(rng, n, rng.uniform(0.15, 0.6)),
    )
    crackle = _decaying_noise(rng, n, rng.uniform(0.05, 0.3)) * (rng.random(n) < 0.02)
    return normalise_peak(boom / max(1e-9, float(np.std(boom))) + crackle * rng.uniform(0.5, 3.0))


def slam(rng: Rng) -> Audio:
    """A heavy object hitting wood or metal: a few damped modes excited by a short noise burst."""
    n = int(rng.uniform(0.3, 1.0) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    out = _decaying_noise(rng, n, rng.uniform(0.002, 0.02)) * rng.uniform(0.5, 2.0)
    metal = rng.random() < 0.4
    for _ in range(int(rng.integers(3, 10))):
        freq = rng.uniform(300, 5000) if metal else rng.uniform(60, 900)
        decay = rng.uniform(0.05, 0.6) if metal else rng.uniform(0.02, 0.15)
        out += rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.28)) * np.exp(-t / decay)
    return normalise_peak(out)


def glass_break(rng: Rng) -> Audio:
    """Breaking glass: a sharp crack then a shower of shards, each a few high inharmonic decaying partials.

    Shard onsets follow a decaying rate so the burst thins out like falling and bouncing fragments.
    """
    n = int(rng.uniform(0.5, 1.8) * SAMPLE_RATE)
    out = np.zeros(n)
    crack_n = int(rng.uniform(0.003, 0.02) * SAMPLE_RATE)
    crack = sps.sosfilt(
        sps.butter(2, rng.uniform(1500, 3500), "high", fs=SAMPLE_RATE, output="sos"),
        _decaying_noise(rng, crack_n * 4, crack_n / SAMPLE_RATE),
    )
    out[: len(crack)] += crack * rng.uniform(1.0, 3.0) / max(1e-9, float(np.max(np.abs(crack))))
    if rng.random() < 0.6:  # the blow that broke it
        thump = _decaying_noise(rng, 1600, 0.01)
        out[:1600] += sps.sosfilt(sps.butter(2, 400, "low", fs=SAMPLE_RATE, output="sos"), thump) * 2.0
    shards = int(rng.integers(20, 160))
    spread_s = rng.uniform(0.1, 0.6)
    for _ in range(shards):
        onset = int(min(n - 200, rng.exponential(spread_s) * SAMPLE_RATE))
        length = min(n - onset, int(rng.uniform(0.02, 0.25) * SAMPLE_RATE))
        if length <= 16:
            continue
        t = np.arange(length) / SAMPLE_RATE
        decay = rng.uniform(0.005, 0.06)
        level = rng.uniform(0.1, 1.0) * np.exp(-onset / SAMPLE_RATE / (spread_s * 2))
        shard = np.zeros(length)
        base = rng.uniform(1800, 6500)
        for ratio in (1.0, rng.uniform(1.4, 2.9), rng.uniform(2.9, 4.7)):
            freq = base * ratio
            if freq < NYQUIST_GUARD_HZ:
                shard += np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.28)) / ratio
        shard += rng.standard_normal(length) * 0.3
        out[onset : onset + length] += level * shard * np.exp(-t / decay)
    return normalise_peak(out)


def _tone(frequency_hz: npt.NDArray[np.float64], harmonics: int, rng: Rng) -> npt.NDArray[np.float64]:
    """A tone following ``frequency_hz`` sample by sample, with decaying odd harmonics (piezo and horn drivers)."""
    phase = 2 * np.pi * np.cumsum(frequency_hz) / SAMPLE_RATE + rng.uniform(0, 2 * np.pi)
    return sum((np.sin(k * phase) / k for k in range(1, 2 * harmonics, 2)), np.zeros_like(phase))


def smoke_alarm(rng: Rng) -> Audio:
    """A smoke or fire alarm: a piezo tone near 3 kHz in the temporal-three pattern (0.5 s on, 0.5 s off, x3)."""
    n = int(rng.uniform(1.2, 2.5) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    beep_s = rng.uniform(0.15, 0.5)
    period_s = beep_s + rng.uniform(0.1, 0.5)
    gate = (np.mod(t + rng.uniform(0, period_s), period_s) < beep_s).astype(np.float64)
    gate = sps.sosfiltfilt(sps.butter(2, 200, "low", fs=SAMPLE_RATE, output="sos"), gate)
    tone = _tone(np.full(n, rng.uniform(2800, 3400)), int(rng.integers(1, 4)), rng)
    return normalise_peak(tone * gate)


def siren(rng: Rng) -> Audio:
    """An emergency-vehicle or air-raid siren: a horn tone sweeping (wail) or switching (hi-lo, yelp) in pitch."""
    n = int(rng.uniform(1.2, 2.5) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    low, high = rng.uniform(450, 800), rng.uniform(1100, 1700)
    kind = int(rng.integers(0, 3))
    if kind == 0:  # wail: slow sweep up and down
        sweep = 0.5 - 0.5 * np.cos(2 * np.pi * t / rng.uniform(2.0, 5.0) + rng.uniform(0, 2 * np.pi))
    elif kind == 1:  # yelp: fast sweeps
        sweep = np.mod(t * rng.uniform(2.5, 5.0), 1.0)
    else:  # hi-lo
        sweep = (np.mod(t * rng.uniform(0.8, 1.6), 1.0) < 0.5).astype(np.float64)
    return normalise_peak(_tone(low + (high - low) * sweep, int(rng.integers(2, 5)), rng))


def small_impact(rng: Rng) -> Audio:
    """Everyday knocks, footsteps and clicks: short, quiet, low-energy transients that are not alarming."""
    n = int(rng.uniform(0.3, 1.0) * SAMPLE_RATE)
    out = np.zeros(n)
    for _ in range(int(rng.integers(1, 6))):
        onset = int(rng.uniform(0, 0.8) * n)
        length = min(n - onset, int(rng.uniform(0.01, 0.06) * SAMPLE_RATE))
        burst = _decaying_noise(rng, length, rng.uniform(0.002, 0.01))
        cutoff = rng.uniform(500, 4000)
        out[onset : onset + length] += sps.sosfilt(sps.butter(2, cutoff, "low", fs=SAMPLE_RATE, output="sos"), burst)
    return normalise_peak(out, 0.3)


# --------------------------------------------------------------------------------------------- augmentation


def synthetic_rir(rng: Rng, rt60_s: float) -> Audio:
    """A room impulse response: direct path, sparse early reflections and an exponentially decaying tail."""
    if rt60_s <= 0:
        raise ValueError(f"rt60_s must be positive, got {rt60_s}")
    n = int(min(1.2, rt60_s * 1.2) * SAMPLE_RATE) + 1
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    damping = sps.butter(1, rng.uniform(2000, 7000), "low", fs=SAMPLE_RATE, output="sos")
    rir = sps.sosfilt(damping, tail) * rng.uniform(0.05, 0.4)
    for _ in range(int(rng.integers(3, 10))):
        rir[int(rng.uniform(0.002, 0.04) * SAMPLE_RATE)] += rng.uniform(-0.6, 0.6)
    rir[0] = 1.0
    return _as_audio(rir / np.sqrt(np.sum(rir**2)))


def reverberate(samples: Audio, rir: Audio) -> Audio:
    """Convolve with an RIR and keep the original length, so the clip stays aligned."""
    return _as_audio(sps.fftconvolve(samples, rir)[: len(samples)])


def mix_at_snr(foreground: Audio, background: Audio, snr_db: float) -> Audio:
    """Add ``background`` scaled so the foreground-to-background power ratio is ``snr_db``."""
    if len(foreground) != len(background):
        raise ValueError(f"cannot mix {len(foreground)} samples with {len(background)} samples")
    fg, bg = rms(foreground), rms(background)
    if bg <= 1e-12:
        return foreground
    if fg <= 1e-12:
        return background
    return _as_audio(foreground + background * (fg / bg) / (10 ** (snr_db / 20)))


def resample_shift(samples: Audio, factor: float) -> Audio:
    """Change pitch and tempo together by ``factor`` (>1 higher and faster), like playing a tape faster."""
    if not 0.5 <= factor <= 2.0:
        raise ValueError(f"resample factor must be in [0.5, 2], got {factor}")
    if abs(factor - 1.0) < 1e-3:
        return samples
    up = 1000
    down = round(up * factor)
    return _as_audio(sps.resample_poly(samples, up, down))


def soft_clip(samples: Audio, drive: float) -> Audio:
    """tanh saturation: shouting into a phone or cheap microphone overdrives it."""
    return _as_audio(np.tanh(samples * drive) / np.tanh(drive))


def band_limit(rng: Rng, samples: Audio) -> Audio:
    """A random microphone/channel response: high-pass, optional telephone-like low-pass, and a tilt."""
    low = rng.uniform(40, 300)
    high = rng.choice([7600.0, 7000.0, 5000.0, 3400.0], p=[0.5, 0.2, 0.2, 0.1])
    sos = sps.butter(2, [low, high], "band", fs=SAMPLE_RATE, output="sos")
    return _as_audio(sps.sosfilt(sos, samples))
