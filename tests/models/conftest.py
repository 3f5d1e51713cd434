"""Shared speech fixtures: espeak-ng sentences generated at test time, and one loaded model per session.

The set is small on purpose (14 short clips, ~45 s of audio): the whole ASR suite transcribes it in a
few seconds on two cores.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.asr import SpokenClip, nonspeech_signals, speech_corpus
from models.asr import AsrOptions, Transcriber, resolve_model
from models.hallucination import HallucinationGuard
from models.phrases import Lexicon, PhraseSpotter, StreamLexicons
from models.speech import SpeechRecognizer
from models.vad import FloatArray

TEST_DISTRESS = {
    None: ("Somebody help me!", "Call the police!", "Get away from me!", "Leave me alone!"),
    20.0: ("Call an ambulance!", "Get off me!"),
    10.0: ("Please, don't hurt me!", "Let me go!"),
}
TEST_NEUTRAL = {
    None: (
        "The fire exit is on the left side of the hall.",
        "I don't need any help, thank you.",
        "The meeting starts at ten in the morning.",
    ),
    20.0: ("The bus will stop at the next corner.", "Could you pass me the salt, please?"),
    10.0: ("My brother called about the concert tickets.",),
}
"""Sentences per SNR (None: clean); voices, rates and pitches cycle through all six espeak variants."""


def whisper_directory(directory: Path) -> Path:
    """A model directory holding the bundled model's config and tokenizer but no model.bin yet: the caller
    decides which weights it holds."""
    bundled = resolve_model(None).path
    directory.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(bundled / name, directory / name)
    return directory


def corpus(sentences: dict[float | None, tuple[str, ...]], distress: bool, seed: int) -> list[SpokenClip]:
    clips: list[SpokenClip] = []
    for snr_db, texts in sentences.items():
        clips += speech_corpus([(text, distress) for text in texts], [snr_db], seed=seed, first_variant=len(clips))
    return clips


@pytest.fixture(scope="session")
def transcriber() -> Transcriber:
    return Transcriber(resolve_model(None), AsrOptions(cpu_threads=2))


@pytest.fixture(scope="session")
def guard() -> HallucinationGuard:
    return HallucinationGuard()


@pytest.fixture(scope="session")
def spotter() -> PhraseSpotter:
    return PhraseSpotter(Lexicon.default())


@pytest.fixture(scope="session")
def recognizer(transcriber: Transcriber, guard: HallucinationGuard) -> SpeechRecognizer:
    """The production chain: segmenter, Whisper, guard and spotter, with the default lexicon."""
    return SpeechRecognizer(transcriber, StreamLexicons(Lexicon.default(), {}), guard=guard)


@pytest.fixture(scope="session")
def distress_clips() -> list[SpokenClip]:
    return corpus(TEST_DISTRESS, distress=True, seed=11)


@pytest.fixture(scope="session")
def neutral_clips() -> list[SpokenClip]:
    return corpus(TEST_NEUTRAL, distress=False, seed=13)


@pytest.fixture(scope="session")
def nonspeech() -> dict[str, FloatArray]:
    return nonspeech_signals()
