"""Generate the demo recording deterministically: two minutes of a quiet room with people talking, then a scream
and a shouted "Help! Call the police!".

Usage: python tools/make_demo_audio.py OUT.wav   (16 kHz mono PCM16 WAV, plus OUT.json with the timeline)

Speech is espeak-ng (Debian package ``espeak-ng``); the room tone and the scream come from
``models.training.synth``, seeded, so the same file is produced on every machine with the same espeak-ng version.
Nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from models.training import synth  # noqa: E402  (the repository root must be importable first)

SAMPLE_RATE = 16_000
DURATION_S = 120.0
SEED = 20_240_601

# (start second, espeak-ng voice, words-per-minute, pitch 0-99, text): ordinary talk in the room.
CONVERSATION = (
    (4.0, "en-us", 155, 45, "Morning. Did you see the delivery came early today? I left the boxes by the door."),
    (14.0, "en-gb", 150, 55, "Thanks. I will carry them upstairs after the meeting. Is the coffee machine fixed?"),
    (25.0, "en-us+f3", 160, 60, "Not yet, somebody is coming on Thursday. We can use the kettle in the kitchen."),
    (36.0, "en-gb-scotland", 145, 40, "Fine by me. Remind me to call the bank before noon, I keep forgetting."),
    (48.0, "en-us", 150, 50, "The weather should clear up this afternoon, so the walk to the station is easy."),
    (60.0, "en-us+f2", 155, 65, "Could you pass me the blue folder? The one with the invoices from last month."),
    (72.0, "en-gb", 150, 45, "Here you go. I think the printer is out of paper again, I will check the cupboard."),
    (84.0, "en-us+f3", 165, 55, "Lunch at one? There is a new place around the corner that does good soup."),
)
SCREAM_AT_S = 96.0
HELP_AT_S = 100.0
HELP_TEXT = "Help! Help me! Call the police!"


def speak(text: str, voice: str, words_per_minute: int, pitch: int, *, amplitude: int = 100) -> np.ndarray:
    """espeak-ng speech as 16 kHz float32."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is required to generate the demo recording (Debian: apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "speech.wav"
        subprocess.run(
            [
                espeak,
                "-v",
                voice,
                "-s",
                str(words_per_minute),
                "-p",
                str(pitch),
                "-a",
                str(amplitude),
                "-w",
                str(wav),
                text,
            ],
            check=True,
            capture_output=True,
        )
        samples, rate = soundfile.read(wav, dtype="float32")
    return np.asarray(soxr.resample(samples, rate, SAMPLE_RATE), dtype=np.float32)


def place(track: np.ndarray, sound: np.ndarray, at_s: float, gain: float) -> None:
    start = int(at_s * SAMPLE_RATE)
    end = min(track.shape[0], start + sound.shape[0])
    track[start:end] += sound[: end - start] * gain


def build() -> tuple[np.ndarray, dict[str, object]]:
    rng = np.random.default_rng(SEED)
    track = synth.room_tone(rng, int(DURATION_S * SAMPLE_RATE)) * 0.03
    for at_s, voice, wpm, pitch, text in CONVERSATION:
        place(track, synth.normalise_peak(speak(text, voice, wpm, pitch), 0.25), at_s, 1.0)
    scream = synth.scream(rng, synth.random_voice(rng, "adult_female"))
    place(track, synth.reverberate(scream, synth.synthetic_rir(rng, 0.4)), SCREAM_AT_S, 0.9)
    shout = synth.soft_clip(speak(HELP_TEXT, "en-us", 175, 75, amplitude=200), 2.5)
    place(track, synth.normalise_peak(shout, 0.85), HELP_AT_S, 1.0)
    peak = float(np.max(np.abs(track)))
    if peak > 0.99:
        track *= 0.99 / peak
    timeline = {
        "duration_s": DURATION_S,
        "benign_until_s": SCREAM_AT_S,
        "distress": [{"at_s": SCREAM_AT_S, "what": "scream"}, {"at_s": HELP_AT_S, "what": f"shouted {HELP_TEXT!r}"}],
    }
    return track.astype(np.float32), timeline


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    track, timeline = build()
    partial = out.with_suffix(".partial.wav")
    soundfile.write(partial, track, SAMPLE_RATE, subtype="PCM_16")
    partial.replace(out)
    out.with_suffix(".json").write_text(json.dumps(timeline, indent=2) + "\n")
    print(f"wrote {out} ({DURATION_S:.0f} s) and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
