"""Hallucination guard: keep only text the audio actually supports.

Why: Whisper writes fluent text for noise, music and silence ("Thank you.", "I'm going to go..."),
and a hallucinated "help" would be the worst false alarm this system can raise. The guard checks a
decoding against the audio (VAD speech probability, signal level) and against the model's own
confidence (no-speech probability, average log-probability, compression ratio), drops single words
that sit where there is no speech (notably words the model invents after the speech ended, which the
recogniser places in the silence pad it appends), and rejects the well-known stock phrases unless the
audio clearly carries them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from events.catalogue import Word
from models.asr import Decoding, GuardDecision, GuardVerdict, Transcript
from models.phrases import normalise_text
from models.vad import SAMPLE_RATE, WINDOW_S, WINDOW_SAMPLES, FloatArray, SileroVad, check_audio

KNOWN_HALLUCINATIONS: Final = frozenset(
    {
        "you",
        "thank you",
        "thanks",
        "thank you very much",
        "thank you so much",
        "thanks for watching",
        "thank you for watching",
        "thanks for listening",
        "thank you for listening",
        "please subscribe",
        "subscribe",
        "like and subscribe",
        "bye",
        "bye bye",
        "goodbye",
        "oh",
        "so",
        "okay",
        "i",
        "the end",
        "you're welcome",
        "see you next time",
        "i'll see you next time",
    }
)
"""Stock outputs Whisper produces on non-speech (normalised: lower case, no punctuation)."""


@dataclass(frozen=True)
class GuardOptions:
    """Thresholds; defaults were set on espeak speech, white/pink noise, tones and silence."""

    vad_speech_threshold: float = 0.5
    """A VAD window at or above this counts as speech for the whole-segment check."""
    min_speech_s: float = 0.1
    """Less VAD speech than this in the segment rejects it."""
    word_speech_threshold: float = 0.35
    """A word needs at least one VAD window at or above this near it."""
    word_tolerance_s: float = 0.3
    """Slack around cross-attention word times, which can be off by a few hundred milliseconds."""
    min_level_dbfs: float = -60.0
    """Loudest 32 ms window quieter than this rejects the segment: there is nothing to hear."""
    no_speech_prob: float = 0.6
    """Whisper's rule: no-speech probability above this with avg_logprob below `low_logprob` means silence."""
    low_logprob: float = -1.0
    certain_no_speech_prob: float = 0.9
    """No-speech probability above this rejects regardless of the log-probability."""
    min_avg_logprob: float = -1.5
    """Average token log-probability below this rejects (the model was guessing)."""
    max_compression_ratio: float = 2.4
    """gzip ratio above this means looping, repetitive output."""
    max_words_per_s: float = 7.0
    """More words per second of audio than anyone can say means invented text."""
    known_phrase_min_probability: float = 0.5
    """A stock hallucination phrase survives only with at least this mean word probability..."""
    known_phrase_max_no_speech_prob: float = 0.5
    """...and no-speech probability below this."""


class HallucinationGuard:
    """Judge decodings against their audio; stateless apart from a reusable VAD."""

    def __init__(self, options: GuardOptions | None = None, vad: SileroVad | None = None) -> None:
        self.options = options or GuardOptions()
        self._vad = vad or SileroVad()

    def review(self, audio: FloatArray, decoding: Decoding) -> Transcript:
        """Return the transcript with only the words the audio supports, and why anything was removed."""
        audio = check_audio(audio, "guarded audio")
        if abs(audio.size / SAMPLE_RATE - decoding.duration_s) > WINDOW_S:
            raise ValueError(
                f"audio lasts {audio.size / SAMPLE_RATE:.3f} s but the decoding covers {decoding.duration_s:.3f} s; "
                "review the audio that was transcribed"
            )
        speech = self._vad.probabilities(audio)
        reasons = self._segment_problems(audio, speech, decoding)
        words: tuple[Word, ...] = ()
        if not reasons:
            words, word_reasons = self._supported_words(speech, decoding)
            text_reasons = self._text_problems(words, decoding)
            reasons = word_reasons + text_reasons
            if text_reasons:
                words = ()
        if not words:
            decision: GuardDecision = "rejected"
        else:
            decision = "filtered" if reasons else "accepted"
        return Transcript(
            text=" ".join(word.text for word in words),
            words=words,
            language=decoding.language,
            model_id=decoding.model_id,
            model_version=decoding.model_version,
            word_timestamps=decoding.word_timestamps,
            avg_logprob=decoding.avg_logprob,
            no_speech_prob=decoding.no_speech_prob,
            duration_s=decoding.duration_s,
            guard=GuardVerdict(decision=decision, reasons=tuple(reasons)),
        )

    def _segment_problems(self, audio: FloatArray, speech: FloatArray, decoding: Decoding) -> list[str]:
        """Reasons to reject the whole decoding."""
        options = self.options
        problems: list[str] = []
        if not normalise_text(decoding.text):
            return ["no words decoded"]
        speech_s = float(np.count_nonzero(speech >= options.vad_speech_threshold)) * WINDOW_S
        if speech_s < options.min_speech_s:
            problems.append(f"VAD found {speech_s:.2f} s of speech (< {options.min_speech_s} s)")
        level = _peak_window_dbfs(audio)
        if level < options.min_level_dbfs:
            problems.append(f"audio level {level:.0f} dBFS is below {options.min_level_dbfs:.0f} dBFS")
        if decoding.no_speech_prob > options.certain_no_speech_prob or (
            decoding.no_speech_prob > options.no_speech_prob and decoding.avg_logprob < options.low_logprob
        ):
            problems.append(
                f"no-speech probability {decoding.no_speech_prob:.2f} with avg log-probability "
                f"{decoding.avg_logprob:.2f}"
            )
        if decoding.avg_logprob < options.min_avg_logprob:
            problems.append(f"avg log-probability {decoding.avg_logprob:.2f} < {options.min_avg_logprob}")
        if not decoding.finished:
            problems.append("decoding ran into the token budget without finishing (repetition loop)")
        if decoding.compression_ratio > options.max_compression_ratio:
            problems.append(
                f"repetitive output (compression ratio {decoding.compression_ratio:.2f} > "
                f"{options.max_compression_ratio})"
            )
        return problems

    def _supported_words(self, speech: FloatArray, decoding: Decoding) -> tuple[tuple[Word, ...], list[str]]:
        """Drop words placed after the audio ended or where the VAD hears no speech."""
        options = self.options
        kept: list[Word] = []
        after_end: list[str] = []
        unvoiced: list[str] = []
        for word in decoding.words:
            if word.start_s >= decoding.duration_s - WINDOW_S:
                after_end.append(word.text)
                continue
            first = max(0, int((word.start_s - options.word_tolerance_s) * SAMPLE_RATE) // WINDOW_SAMPLES)
            end_s = min(word.end_s, decoding.duration_s) + options.word_tolerance_s
            last = int(end_s * SAMPLE_RATE) // WINDOW_SAMPLES + 1
            if speech[first:last].size == 0 or speech[first:last].max() < options.word_speech_threshold:
                unvoiced.append(word.text)
                continue
            kept.append(word)
        reasons = []
        if after_end:
            reasons.append(f"{len(after_end)} word(s) placed after the audio ended: {' '.join(after_end)!r}")
        if unvoiced:
            reasons.append(f"{len(unvoiced)} word(s) without speech under them: {' '.join(unvoiced)!r}")
        return tuple(kept), reasons

    def _text_problems(self, words: tuple[Word, ...], decoding: Decoding) -> list[str]:
        """Reasons to reject what is left: implausible speaking rate or an unsupported stock phrase."""
        options = self.options
        text = normalise_text(" ".join(word.text for word in words))
        if not text:
            return []
        word_count = len(text.split())
        if word_count / decoding.duration_s > options.max_words_per_s:
            return [f"{word_count} words in {decoding.duration_s:.2f} s is faster than anyone speaks"]
        if text in KNOWN_HALLUCINATIONS:
            mean_probability = float(np.mean([word.probability for word in words]))
            if (
                mean_probability < options.known_phrase_min_probability
                or decoding.no_speech_prob >= options.known_phrase_max_no_speech_prob
            ):
                return [
                    f"stock hallucination {text!r} without acoustic support (word probability "
                    f"{mean_probability:.2f}, no-speech probability {decoding.no_speech_prob:.2f})"
                ]
        return []


def _peak_window_dbfs(audio: FloatArray) -> float:
    """Level of the loudest 32 ms window, in dB relative to full scale."""
    windows = np.pad(audio, (0, (-audio.size) % WINDOW_SAMPLES)).reshape(-1, WINDOW_SAMPLES)
    peak_rms = float(np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1)).max())
    return 20.0 * float(np.log10(max(peak_rms, 1e-12)))
