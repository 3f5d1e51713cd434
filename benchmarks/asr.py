"""ASR benchmark: speed (times real time) with and without VAD gating, WER and phrase spotting on speech
generated with espeak-ng, and what comes out of non-speech.

Why generated speech: no recordings may be downloaded, and espeak-ng gives many voices, rates and
pitches on demand. It is robotic, so WER here is a relative measure, not a field estimate.

The speech corpus lives here so the tests and the benchmark measure the same thing; both run the
production chain (`models.speech.SpeechRecognizer`).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import soundfile
import soxr
from rapidfuzz.distance import Levenshtein

from events.catalogue import PhraseHit
from models.asr import AsrOptions, Transcriber, resolve_model
from models.phrases import ALARM_SCORE, Lexicon, StreamLexicons, phrase_tokens
from models.speech import RecognisedSpeech, SpeechRecognizer
from models.speech_segmenter import SegmenterOptions
from models.vad import SAMPLE_RATE, FloatArray

DISTRESS_SENTENCES: Final = (
    "Somebody help me!",
    "Call the police!",
    "Get away from me!",
    "Please, don't hurt me!",
    "Leave me alone!",
    "Help! Help!",
    "Call an ambulance!",
    "Let me go!",
    "Stop it!",
    "Fire! Fire!",
    "Get off me!",
    "Call nine one one!",
)
NEUTRAL_SENTENCES: Final = (
    "The meeting starts at ten in the morning.",
    "I bought some apples at the market today.",
    "The fire exit is on the left side of the hall.",
    "Could you pass me the salt, please?",
    "The bus will stop at the next corner.",
    "I don't need any help, thank you.",
    "We should repaint the kitchen next summer.",
    "The weather is lovely this afternoon.",
    "My brother called about the concert tickets.",
    "Please send the report before Friday.",
)
VOICES: Final = ("en-us", "en-gb+f3", "en-us+m3", "en-gb-scotland+f2", "en-us+klatt", "en-029+f4")
RATES: Final = (140, 155, 170)
PITCHES: Final = (35, 50, 65)
SNRS_DB: Final = (None, 20.0, 10.0)
"""None: clean. Noise is white, added over the whole stream including the silence around the speech."""
STREAM_CHUNK_S: Final = 0.25
LEAD_SILENCE_S: Final = 0.6


@dataclass(frozen=True, eq=False)
class SpokenClip:
    """One synthesised sentence; `distress` marks sentences that must produce an alarm-level hit."""

    text: str
    distress: bool
    voice: str
    rate: int
    pitch: int
    snr_db: float | None
    audio: FloatArray = field(repr=False)
    """Speech with `LEAD_SILENCE_S` of silence before and after, noise included when `snr_db` is set."""


def synthesize(text: str, voice: str, rate: int, pitch: int) -> FloatArray:
    """Speak `text` with espeak-ng, resampled to 16 kHz float32."""
    executable = shutil.which("espeak-ng")
    if executable is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install -y espeak-ng)")
    completed = subprocess.run(
        [executable, "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=30,
    )
    samples, rate_hz = soundfile.read(io.BytesIO(completed.stdout), dtype="float32")
    resampled: FloatArray = np.asarray(soxr.resample(samples, rate_hz, SAMPLE_RATE), dtype=np.float32)
    return resampled


def with_silence_and_noise(speech: FloatArray, snr_db: float | None, rng: np.random.Generator) -> FloatArray:
    """Surround speech with silence, then add white noise at `snr_db` relative to the speech power."""
    silence = np.zeros(round(LEAD_SILENCE_S * SAMPLE_RATE), dtype=np.float32)
    audio = np.concatenate([silence, speech, silence])
    if snr_db is None:
        return audio
    speech_power = float(np.mean(np.square(speech, dtype=np.float64)))
    noise = rng.standard_normal(audio.size) * np.sqrt(speech_power / 10.0 ** (snr_db / 10.0))
    noisy: FloatArray = np.clip(audio + noise, -1.0, 1.0).astype(np.float32)
    return noisy


def speech_corpus(
    sentences: Sequence[tuple[str, bool]], snrs_db: Sequence[float | None], seed: int = 7, first_variant: int = 0
) -> list[SpokenClip]:
    """Each sentence once per SNR; voice, rate and pitch cycle over the sentences, starting at `first_variant`
    (the same for all SNRs of a sentence, so SNRs compare like with like)."""
    rng = np.random.default_rng(seed)
    clips: list[SpokenClip] = []
    for index, (text, distress) in enumerate(sentences, start=first_variant):
        voice, rate, pitch = VOICES[index % len(VOICES)], RATES[index % len(RATES)], PITCHES[index % 5 % 3]
        speech = synthesize(text, voice, rate, pitch)
        clips.extend(
            SpokenClip(
                text=text,
                distress=distress,
                voice=voice,
                rate=rate,
                pitch=pitch,
                snr_db=snr_db,
                audio=with_silence_and_noise(speech, snr_db, rng),
            )
            for snr_db in snrs_db
        )
    return clips


def nonspeech_signals(seconds: float = 4.0, seed: int = 3) -> dict[str, FloatArray]:
    """Silence, noises and music-like tones: everything here must yield no transcript at all."""
    rng = np.random.default_rng(seed)
    count = round(seconds * SAMPLE_RATE)
    times = np.arange(count) / SAMPLE_RATE
    spectrum = np.fft.rfft(rng.standard_normal(count))
    pink = np.fft.irfft(spectrum / np.sqrt(np.maximum(np.arange(spectrum.size), 1)), count)
    note_s = 0.5
    scale_hz = (262.0, 294.0, 330.0, 349.0, 392.0, 440.0, 494.0, 523.0)
    melody_hz = np.repeat(scale_hz, round(note_s * SAMPLE_RATE))[:count]
    melody_phase = 2 * np.pi * np.cumsum(np.resize(melody_hz, count)) / SAMPLE_RATE
    chord = sum(np.sin(2 * np.pi * root * harmonic * times) / harmonic for root in (262.0, 330.0, 392.0)
                for harmonic in (1, 2, 3, 4))  # fmt: skip
    signals = {
        "silence": np.zeros(count),
        "white_noise": 0.1 * rng.standard_normal(count),
        "quiet_white_noise": 0.01 * rng.standard_normal(count),
        "pink_noise": 0.3 * pink / np.abs(pink).max(),
        "melody": 0.2 * sum(np.sin(harmonic * melody_phase) / harmonic for harmonic in (1, 2, 3, 4)),
        "chord": 0.05 * chord,
        "clicks": np.where(rng.random(count) < 0.001, 0.8, 0.0),
    }
    return {name: np.asarray(signal, dtype=np.float32) for name, signal in signals.items()}


def recognise_stream(
    recognizer: SpeechRecognizer, audio: FloatArray, stream_id: str = "bench", chunk_s: float = STREAM_CHUNK_S
) -> list[RecognisedSpeech]:
    """Stream `audio` in chunks through the recognizer as one whole stream; return what it recognised."""
    chunk = round(chunk_s * SAMPLE_RATE)
    results: list[RecognisedSpeech] = []
    for sequence, offset in enumerate(range(0, audio.size, chunk)):
        results += recognizer.feed(stream_id, audio[offset : offset + chunk], sequence, offset)
    return results + recognizer.finish(stream_id)


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference word count) on normalised text."""
    reference_words = phrase_tokens(reference)
    return Levenshtein.distance(reference_words, phrase_tokens(hypothesis)), len(reference_words)


def transcript_text(results: Sequence[RecognisedSpeech]) -> str:
    return " ".join(result.transcript.text for result in results)


def alarm_hits(results: Sequence[RecognisedSpeech]) -> list[PhraseHit]:
    return [hit for result in results for hit in result.phrases if hit.score >= ALARM_SCORE]


def _timed(action: Callable[[], list[RecognisedSpeech]]) -> tuple[list[RecognisedSpeech], float]:
    """Run `action` and return its result with the wall-clock seconds it took."""
    started = time.perf_counter()
    results = action()
    return results, time.perf_counter() - started


def _speed(audio_s: float, seconds: float) -> float:
    return round(audio_s / seconds, 1) if seconds > 0 else float("inf")


def _evaluate(
    clips: Sequence[SpokenClip], recognizer: SpeechRecognizer
) -> Iterator[tuple[SpokenClip, list[RecognisedSpeech], float]]:
    for clip in clips:
        results, seconds = _timed(functools.partial(recognise_stream, recognizer, clip.audio))
        yield clip, results, seconds


def _condition(snr_db: float | None) -> str:
    return "clean" if snr_db is None else f"{snr_db:g}db"


def run(options: AsrOptions | None = None) -> dict[str, Any]:
    """Measure the bundled model end to end on this machine; `x_realtime` is the gated speed on speech.

    Speeds are audio seconds per processing second over the whole chain (VAD, segmenter, Whisper, guard,
    spotter) fed in 0.25 s chunks; "ungated" sends everything to Whisper in 4 s pieces instead. The
    machine's load average is reported because wall-clock speed depends on what else runs;
    `x_realtime_per_cpu_second` (audio seconds per CPU second of this process, all threads) depends less on it.
    """
    load_before = os.getloadavg()[0]
    sentences = [(text, True) for text in DISTRESS_SENTENCES] + [(text, False) for text in NEUTRAL_SENTENCES]
    clips = speech_corpus(sentences, SNRS_DB)
    transcriber = Transcriber(resolve_model(None), options)
    lexicons = StreamLexicons(Lexicon.default(), {})
    gated = SpeechRecognizer(transcriber, lexicons)
    ungated = SpeechRecognizer(transcriber, lexicons, segmenter_options=SegmenterOptions(gate=False))
    recognise_stream(gated, clips[0].audio)  # warm-up: first-call allocations are not what a running actor sees

    report: dict[str, Any] = {}
    speech_s = sum(clip.audio.size for clip in clips) / SAMPLE_RATE
    gated_seconds = 0.0
    cpu_started = time.process_time()
    for snr_db in SNRS_DB:
        errors = words = detected = distress = false_alarms = neutral = 0
        for clip, results, seconds in _evaluate([clip for clip in clips if clip.snr_db == snr_db], gated):
            gated_seconds += seconds
            wrong, count = word_errors(clip.text, transcript_text(results))
            errors, words = errors + wrong, words + count
            alarmed = bool(alarm_hits(results))
            detected, distress = detected + (alarmed and clip.distress), distress + clip.distress
            false_alarms, neutral = false_alarms + (alarmed and not clip.distress), neutral + (not clip.distress)
        report[f"wer_{_condition(snr_db)}"] = round(errors / words, 3)
        report[f"phrase_recall_{_condition(snr_db)}"] = round(detected / distress, 3)
        report[f"neutral_false_alarms_{_condition(snr_db)}"] = f"{false_alarms}/{neutral}"
    gated_cpu_seconds = time.process_time() - cpu_started
    ungated_seconds = sum(seconds for _, _, seconds in _evaluate(clips, ungated))

    nonspeech = nonspeech_signals()
    nonspeech_s = sum(signal.size for signal in nonspeech.values()) / SAMPLE_RATE
    for name, recognizer in (("gated", gated), ("ungated", ungated)):
        seconds_total = 0.0
        transcripts = alarms = 0
        for signal in nonspeech.values():
            results, seconds = _timed(functools.partial(recognise_stream, recognizer, signal))
            seconds_total += seconds
            transcripts += len(results)
            alarms += len(alarm_hits(results))
        suffix = "" if name == "gated" else "_ungated"
        report[f"nonspeech_x_realtime{suffix}"] = _speed(nonspeech_s, seconds_total)
        report[f"nonspeech_transcripts{suffix}"] = transcripts
        report[f"nonspeech_alarm_hits{suffix}"] = alarms

    return {
        "x_realtime": _speed(speech_s, gated_seconds),
        "x_realtime_ungated": _speed(speech_s, ungated_seconds),
        "x_realtime_per_cpu_second": _speed(speech_s, gated_cpu_seconds),
        **report,
        "speech_audio_s": round(speech_s, 1),
        "speech_clips": len(clips),
        "nonspeech_audio_s": round(nonspeech_s, 1),
        "nonspeech_signals": sorted(nonspeech),
        "model_id": transcriber.model.model_id,
        "model_version": transcriber.model.version,
        "device": transcriber.device,
        "compute_type": transcriber.compute_type,
        "cpu_threads": transcriber.options.cpu_threads,
        "beam_size": transcriber.options.beam_size,
        "word_timestamps": transcriber.word_timestamps,
        "load_average_1m": round(max(load_before, os.getloadavg()[0]), 2),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the model")
    arguments = parser.parse_args(argv)
    options = AsrOptions() if arguments.threads is None else AsrOptions(cpu_threads=arguments.threads)
    report = run(options)
    if arguments.json:
        print(json.dumps(report, sort_keys=True))
        return
    for key, value in report.items():
        print(f"{key:30} {value}")


if __name__ == "__main__":
    main()
