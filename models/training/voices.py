"""TTS voices (espeak-ng accents x variants, flite, festival) speaking everyday sentences, and the same voices
"shouting" distress calls."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile

from models.training import synth
from models.training.errors import DatasetError, MissingPackageError
from models.training.game_sounds import to_mono_16k
from models.training.synth import Audio, Rng

EVERYDAY_SENTENCES = (
    "Could you pass me the salt, please?",
    "I think the bus is running late again today.",
    "Let's meet at the cafe around three o'clock.",
    "The weather forecast says it will rain tomorrow.",
    "Did you remember to buy milk on the way home?",
    "I'm going to read for a while before bed.",
    "The meeting has been moved to Thursday morning.",
    "Can you help me carry these boxes upstairs?",
    "We should paint the kitchen a lighter colour.",
    "My sister is visiting us next weekend.",
    "Turn left at the second traffic light.",
    "This soup needs a little more pepper.",
    "I left my keys on the table by the door.",
    "The children are playing in the garden.",
    "Have you seen the new film at the cinema?",
    "Please close the window, it's getting cold.",
    "I'll call you back after lunch.",
    "The train to the city leaves in ten minutes.",
    "Thank you very much, that's very kind of you.",
    "What time does the shop open on Sunday?",
    "She told me the whole story yesterday evening.",
    "The dog needs a walk before it gets dark.",
    "We ran out of coffee, can you get some?",
    "That was a really good game last night.",
    "I need to finish this report by Friday.",
    "Help yourself to some more cake.",
    "Stop by the library if you have time.",
    "No, I don't think that's the right address.",
    "Watch out for the step when you come in.",
    "The plumber said he would come at noon.",
    "Honestly, I can't remember where I parked.",
    "Let me know when you are ready to go.",
)

SHOUTED_PHRASES = (
    "Help!",
    "Help me!",
    "Somebody help me!",
    "Stop it!",
    "Get away from me!",
    "Leave me alone!",
    "Call the police!",
    "Don't touch me!",
    "Let me go!",
    "No! Stop!",
    "Get off me!",
    "Please, help!",
    "Someone call an ambulance!",
    "Fire! Get out!",
    "Stop, thief!",
    "Get out of here!",
    "Let go of me!",
    "Help, please, somebody!",
    "Watch out!",
    "Don't hurt me!",
    "Go away!",
    "What are you doing? Stop!",
)

# espeak-ng voice variants with robot or deliberately distorted timbres are left out: they are not human.
_ESPEAK_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
_ESPEAK_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "croak",
    "klatt",
    "klatt2",
    "klatt3",
    "klatt4",
    "Alex",
    "Alicia",
    "Andrea",
    "Andy",
    "Annie",
    "Denis",
    "Diogo",
    "Gene",
    "Henrique",
    "Hugo",
    "Jacky",
    "Lee",
    "Marco",
    "Mario",
    "Michael",
    "Mike",
    "Nguyen",
    "Storm",
    "Tweaky",
    "adam",
    "anika",
    "antonio",
    "aunty",
    "belinda",
    "benjamin",
    "boris",
    "caleb",
    "david",
    "ed",
    "edward",
    "grandma",
    "grandpa",
    "gustave",
    "iven",
    "iven2",
    "john",
    "kaukovalta",
    "linda",
    "marcelo",
    "max",
    "michel",
    "miguel",
    "norbert",
    "pablo",
    "paul",
    "pedro",
    "quincy",
    "rob",
    "robert",
    "sandro",
    "shelby",
    "steph",
    "steph2",
    "travis",
    "victor",
    "zac",
)
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FESTIVAL_VOICES = {
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
}
TTS_PACKAGES = {"espeak": "espeak-ng", "flite": "flite", "festival": "festival"}


@dataclass(frozen=True)
class Voice:
    """One TTS voice; its ``source_id`` is the unit of the by-source split for everything it says."""

    engine: Literal["espeak", "flite", "festival"]
    name: str

    @property
    def source_id(self) -> str:
        return f"tts-{self.engine}:{self.name}"


def available_voices(seed: int, espeak_voices: int) -> list[Voice]:
    """All flite and festival voices plus ``espeak_voices`` accent+variant combinations chosen by ``seed``."""
    missing = [pkg for engine, pkg in TTS_PACKAGES.items() if shutil.which(_tts_binary(engine)) is None]
    missing += [pkg for voice, pkg in FESTIVAL_VOICES.items() if not _festival_voice_dir(voice).exists()]
    if missing:
        raise MissingPackageError(missing, "the TTS part of the dataset")
    rng = np.random.default_rng([seed, 7])
    combos = [(a, v) for a in _ESPEAK_ACCENTS for v in _ESPEAK_VARIANTS]
    picked = rng.choice(len(combos), size=min(espeak_voices, len(combos)), replace=False)
    voices = [Voice("espeak", f"{combos[i][0]}+{combos[i][1]}") for i in sorted(picked)]
    voices += [Voice("flite", name) for name in FLITE_VOICES]
    voices += [Voice("festival", name) for name in FESTIVAL_VOICES]
    return voices


def _tts_binary(engine: str) -> str:
    return {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}[engine]


def _festival_voice_dir(voice: str) -> Path:
    parent = "us" if voice.startswith("cmu_us") else "english"
    return Path("/usr/share/festival/voices") / parent / voice


def speak(voice: Voice, text: str, pitch: int, rate_wpm: int, workdir: Path) -> Audio:
    """Synthesise ``text`` with one voice at a given pitch (espeak 0-99) and rate (words per minute)."""
    out = workdir / "utterance.wav"
    if voice.engine == "espeak":
        command = ["espeak-ng", "-v", voice.name, "-p", str(pitch), "-s", str(rate_wpm), "-w", str(out), text]
    elif voice.engine == "flite":
        stretch = f"{160 / rate_wpm:.2f}"
        command = [
            "flite",
            "-voice",
            voice.name,
            "--setf",
            f"duration_stretch={stretch}",
            "--setf",
            f"int_f0_target_mean={80 + pitch * 1.5:.0f}",
            "-t",
            text,
            "-o",
            str(out),
        ]
    else:
        script = workdir / "utterance.txt"
        script.write_text(text)
        command = ["text2wave", "-eval", f"(voice_{voice.name})", str(script), "-o", str(out)]
    result = subprocess.run(command, capture_output=True, timeout=120, check=False)
    if result.returncode != 0 or not out.exists():
        raise DatasetError(f"{voice.source_id} failed to speak {text!r}: {result.stderr.decode(errors='replace')}")
    data, rate = soundfile.read(out, dtype="float32")
    return to_mono_16k(data, rate)


def make_shouted(rng: Rng, speech: Audio) -> Audio:
    """Turn TTS speech into a shout-like utterance.

    Shouting raises F0 and F1 and flattens the spectral tilt; loud voices also overdrive cheap microphones.
    Resampling up moves pitch and formants together; first-order pre-emphasis flattens the tilt; tanh clips.
    """
    raised = synth.resample_shift(speech, float(rng.uniform(1.08, 1.3)))
    emphasis = float(rng.uniform(0.5, 0.95))
    brighter = np.append(raised[0], raised[1:] - emphasis * raised[:-1]).astype(np.float32)
    return synth.soft_clip(synth.normalise_peak(brighter), float(rng.uniform(1.5, 5.0)))
