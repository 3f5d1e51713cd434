"""Recorded game sounds: the labelling rules of the packages added for gunshot and alarm (and the relabelled weapons
of the first eight), the Doom WAD lump reader and the WavPack decoder on the installed files."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from domain.labels import SOUND_LABELS
from models.training.dataset import MORE_SOUND_PACKAGES
from models.training.errors import DatasetError
from models.training.game_formats import decode_doom_sound, decode_with_ffmpeg, is_doom_sound, wad_lumps
from models.training.game_sounds import PACKAGE_LOCATIONS, RULES, classify, find_recordings, installed, read_recording

FREEDOOM1, FREEDOOM2 = PACKAGE_LOCATIONS["freedoom"]
TEEWORLDS = Path(PACKAGE_LOCATIONS["teeworlds-data"][0])


def needs(package: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not installed(package), reason=f"{package} is not installed (apt-get install -y {package})"
    )


@pytest.mark.parametrize(
    ("package", "member", "expected"),
    [
        # the first eight packages: weapons are gunshots now, crashes, collapses and bounces stay impacts
        ("openarena-data", "sound/weapons/machinegun/machgf1b.wav", ("gunshot", "openarena-data:machinegun")),
        ("openarena-data", "sound/weapons/rocket/rocklx1a.wav", ("gunshot", "openarena-data:rocket")),
        ("openarena-data", "sound/weapons/grenade/hgrenb1a.wav", ("impact", "openarena-data:grenade")),
        ("openarena-data", "sound/items/kam_explode.wav", ("gunshot", "openarena-data:kam")),
        ("nexuiz-data", "sound/weapons/hagexp1.ogg", ("gunshot", "nexuiz-data:hagexp")),
        ("nexuiz-data", "sound/weapons/shotgun_fire.ogg", ("gunshot", "nexuiz-data:shotgun")),
        ("warzone2100-data", "audio/sfx/explons/lrgexpl.ogg", ("gunshot", "warzone2100-data:explons")),
        ("warzone2100-data", "audio/sfx/explons/bldfall.ogg", ("impact", "warzone2100-data:explons")),
        ("warzone2100-data", "audio/sfx/weapons/mgbar1.ogg", ("gunshot", "warzone2100-data:mgbar")),
        ("supertuxkart-data", "sfx/explosion.ogg", ("gunshot", "supertuxkart-data:explosion")),
        ("supertuxkart-data", "sfx/crash2.ogg", ("impact", "supertuxkart-data:crash")),
        ("0ad-data", "audio/attack/siege/ram_attack.ogg", ("impact", "0ad-data:siege")),
        # Teeworlds
        ("teeworlds-data", "wp_shotty_fire-02.wv", ("gunshot", "teeworlds-data:wp_shotty_fire")),
        ("teeworlds-data", "wp_flump_explo-01.wv", ("gunshot", "teeworlds-data:wp_flump_explo")),
        ("teeworlds-data", "wp_hammer_hit-03.wv", ("impact", "teeworlds-data:wp_hammer_hit")),
        ("teeworlds-data", "foley_foot_left-02.wv", ("background", "teeworlds-data:foley_foot")),
        ("teeworlds-data", "vo_teefault_pain_long-01.wv", None),
        ("teeworlds-data", "wp_gun_fire-01.wv", None),
        # Freedoom: lumps of one family share a source
        ("freedoom", "DSPISTOL", ("gunshot", "freedoom:pistol")),
        ("freedoom", "DSBAREXP", ("gunshot", "freedoom:explosion")),
        ("freedoom", "DSRXPLOD", ("gunshot", "freedoom:explosion")),
        ("freedoom", "DSPDIEHI", ("scream", "freedoom:player")),
        ("freedoom", "DSPUNCH", ("impact", "freedoom:punch")),
        ("freedoom", "DSDOROPN", ("background", "freedoom:door")),
        ("freedoom", "DSPOSIT2", None),
        ("freedoom", "DSBFG", None),
        # Widelands
        ("widelands-data", "sound/animals/wolf_01.ogg", ("background", "widelands-data:wolf")),
        ("widelands-data", "sound/woodcutting/tree_falling_00.ogg", ("impact", "widelands-data:tree_falling")),
        ("widelands-data", "sound/woodcutting/woodcutting.ogg", ("background", "widelands-data:woodcutting")),
        ("widelands-data", "sound/message_01.ogg", ("background", "widelands-data:ui")),
        ("widelands-data", "sound/barbarians/mortar.ogg", None),
        # Flare
        ("flare-game", "soundfx/female_die.ogg", ("scream", "flare-game:female")),
        ("flare-game", "soundfx/npcs/male_merchant_03.ogg", ("speech", "flare-game:male_merchant")),
        ("flare-game", "soundfx/environment/falling_rocks.ogg", ("impact", "flare-game:falling_rocks")),
        ("flare-game", "soundfx/enemies/goblin_die.ogg", None),
        ("flare-game", "soundfx/male_hit.ogg", None),
        # SuperTux
        ("supertux-data", "sounds/crystallo-shatter.ogg", ("glass", "supertux-data:crystallo")),
        ("supertux-data", "sounds/coins_cleared.ogg", ("background", "supertux-data:coin")),
        ("supertux-data", "music/forest/forest.ogg", ("background", "supertux-data:music")),
        ("supertux-data", "speech/tux_upset.ogg", None),
        ("supertux-data", "sounds/explosion.wav", None),
        # Tux Paint, Frozen Bubble, Pingus
        ("tuxpaint-data", "giggle.wav", ("speech", "tuxpaint-data:giggle")),
        ("tuxpaint-data", "paint3.wav", ("background", "tuxpaint-data:tools")),
        ("tuxpaint-data", "youcannot.wav", None),
        ("frozen-bubble-data", "menu_change.ogg", ("background", "frozen-bubble-data:ui")),
        ("frozen-bubble-data", "noh.ogg", None),
        ("pingus-data", "plop2.wav", ("background", "pingus-data:plop")),
        ("pingus-data", "ohno.wav", None),
        # LinCity-NG: a building names the source
        ("lincity-ng-data", "sounds/FireStation3.wav", ("alarm", "lincity-ng-data:firestation")),
        ("lincity-ng-data", "sounds/Health4.wav", ("alarm", "lincity-ng-data:health")),
        ("lincity-ng-data", "sounds/FireStation1.wav", None),
        ("lincity-ng-data", "sounds/University1.wav", None),
        ("lincity-ng-data", "sounds/RocketExplosion1.wav", ("gunshot", "lincity-ng-data:rocketexplosion")),
        ("lincity-ng-data", "sounds/SubstationOn.wav", ("speech", "lincity-ng-data:substation")),
        ("lincity-ng-data", "sounds/Substation3.wav", ("speech", "lincity-ng-data:substation")),
        ("lincity-ng-data", "sounds/MonumentConstruction2.wav", ("background", "lincity-ng-data:monumentconstruction")),
        ("lincity-ng-data", "sounds/WindMillHTech1.wav", ("background", "lincity-ng-data:windmill")),
        ("lincity-ng-data", "sounds/School1.wav", None),
    ],
)
def test_files_are_labelled_by_the_first_matching_rule(
    package: str, member: str, expected: tuple[str, str] | None
) -> None:
    assert classify(package, member) == expected


def test_rules_use_only_sound_labels_and_allowed_packages() -> None:
    families = {p.removesuffix("-data").removesuffix("-088") for p in PACKAGE_LOCATIONS}
    for rule in RULES:
        assert rule.label is None or rule.label in SOUND_LABELS, rule
        assert rule.package in families, rule


@needs("lincity-ng-data")
def test_animal_calls_are_flagged() -> None:
    recordings = {r.member: r for r in find_recordings(("lincity-ng-data",))}
    assert recordings["sounds/Farm3.wav"].animal and recordings["sounds/Farm3.wav"].label == "background"
    assert not recordings["sounds/TraficHigh1.wav"].animal


def _wad(lumps: dict[str, bytes]) -> bytes:
    """A minimal IWAD: header, the lumps back to back, then the directory."""
    body = b"".join(lumps.values())
    directory, offset = b"", 12
    for name, data in lumps.items():
        directory += struct.pack("<ii8s", offset, len(data), name.encode())
        offset += len(data)
    return struct.pack("<4sii", b"IWAD", len(lumps), 12 + len(body)) + body + directory


def _doom_sound(rate: int, samples: bytes) -> bytes:
    padded = samples[:1] * 16 + samples + samples[-1:] * 16
    return struct.pack("<HHI", 3, rate, len(padded)) + padded


def test_wad_reader_finds_sound_lumps_and_decodes_unsigned_8_bit_pcm(tmp_path: Path) -> None:
    sound = _doom_sound(11025, bytes([0, 128, 255, 64]))
    path = tmp_path / "tiny.wad"
    path.write_bytes(_wad({"DSTEST": sound, "MAP01": b"not a sound", "DSEMPTY": b"\0\0\0\0"}))
    lumps = wad_lumps(path, "DS")
    assert set(lumps) == {"DSTEST", "DSEMPTY"}
    assert is_doom_sound(lumps["DSTEST"]) and not is_doom_sound(lumps["DSEMPTY"])
    samples, rate = decode_doom_sound(lumps["DSTEST"])
    assert rate == 11025 and samples.dtype == np.float32
    np.testing.assert_array_equal(samples, [-1.0, 0.0, 127 / 128, -0.5])  # the 16 pad bytes at each end are gone
    with pytest.raises(DatasetError, match="not a Doom sound"):
        decode_doom_sound(lumps["DSEMPTY"])
    (tmp_path / "bad.wad").write_bytes(b"PK\3\4" + bytes(20))
    with pytest.raises(DatasetError, match="not a WAD"):
        wad_lumps(tmp_path / "bad.wad")


@needs("freedoom")
def test_freedoom_sounds_are_read_from_the_installed_wads() -> None:
    lumps = wad_lumps(FREEDOOM2, "DS")
    header = struct.unpack_from("<HHI", lumps["DSPISTOL"], 0)
    samples, rate = decode_doom_sound(lumps["DSPISTOL"])
    assert header[0] == 3 and rate == header[1] == 22050
    assert len(samples) == header[2] - 32 and -1.0 <= samples.min() < samples.max() < 1.0
    assert not is_doom_sound(lumps["DSFLAME"])  # an empty placeholder in freedoom2.wad
    recordings = find_recordings(("freedoom",))
    assert len({r.member for r in recordings}) == len(recordings)  # freedoom2.wad's copies are left out
    by_member = {r.member: r for r in recordings}
    assert by_member["DSPISTOL"].location == FREEDOOM1 and by_member["DSDSHTGN"].location == FREEDOOM2
    audio = read_recording(by_member["DSPISTOL"])
    assert audio.dtype == np.float32 and audio.ndim == 1 and abs(len(audio) / 16000 - len(samples) / rate) < 0.01


@needs("teeworlds-data")
def test_wavpack_files_are_decoded_by_ffmpeg() -> None:
    audio = decode_with_ffmpeg(TEEWORLDS / "vo_teefault_cry-01.wv")  # 64,916 samples at 44.1 kHz, mono
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 64916 * 16000 / 44100) < 16 and 0.05 < np.abs(audio).max() <= 1.0
    recording = next(r for r in find_recordings(("teeworlds-data",)) if r.member == "wp_shotty_fire-01.wv")
    assert recording.label == "gunshot" and read_recording(recording).size > 0.3 * 16000


def test_a_wavpack_file_made_here_decodes_to_16_khz_mono(tmp_path: Path) -> None:
    """The decoder on a file ffmpeg encodes here (stereo, 44.1 kHz, 0.5 s of 440 Hz): CI runs it without the
    training packages."""
    source = tmp_path / "tone.wv"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100:duration=0.5",
            "-ac",
            "2",
            "-c:a",
            "wavpack",
            str(source),
        ],
        check=True,
    )
    audio = decode_with_ffmpeg(source)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 8000) < 16
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 440) < 5


def test_an_undecodable_file_names_itself(tmp_path: Path) -> None:
    broken = tmp_path / "broken.wv"
    broken.write_bytes(b"wvpk" + bytes(40))
    with pytest.raises(DatasetError, match=r"ffmpeg cannot decode .*broken\.wv"):
        decode_with_ffmpeg(broken)


@pytest.mark.parametrize("package", MORE_SOUND_PACKAGES)
def test_every_new_package_yields_recordings(package: str) -> None:
    if not installed(package):
        pytest.skip(f"{package} is not installed (apt-get install -y {package})")
    recordings = find_recordings((package,))
    assert recordings, f"no file of {package} matched a labelling rule"
    assert all(r.source_id.startswith(f"{package}:") and r.source_id != f"{package}:" for r in recordings)
