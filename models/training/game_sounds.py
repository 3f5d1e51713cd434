"""Recorded game sounds from Debian data packages, labelled by their file paths (``RULES``), read as 16 kHz mono."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile
import soxr

from domain.audio import SAMPLE_RATE
from models.training.errors import DatasetError, MissingPackageError
from models.training.synth import Audio

# Where each allowed package keeps its sounds: zip archives (pk3/wz) or plain directories.
PACKAGE_LOCATIONS: dict[str, tuple[str, ...]] = {
    "openarena-data": (
        "/usr/share/games/openarena/baseoa/pak0.pk3",
        "/usr/share/games/openarena/missionpack/mp-pak0.pk3",
    ),
    "openarena-088-data": ("/usr/share/games/openarena/baseoa/pak6-patch088.pk3",),
    "nexuiz-data": ("/usr/share/games/nexuiz/data/data.pk3",),
    "warzone2100-data": ("/usr/share/games/warzone2100/base.wz",),
    "megaglest-data": ("/usr/share/games/megaglest",),
    "freedink-data": ("/usr/share/games/dink/dink/Sound",),
    "0ad-data": ("/usr/share/games/0ad/mods/public/public.zip",),
    "supertuxkart-data": ("/usr/share/games/supertuxkart/data",),
}

_HUMAN_UNITS = (
    "archer|archmage|axe_thrower|guard|horseman|swordman|technician|worker|battlemage|initiate|summoner|cudgel"
    "|valkyrie|princess|spearman|stickfighter|warrior|shaman"
)


@dataclass(frozen=True)
class FileRule:
    """Label for sound files whose package-relative path matches ``pattern`` (first matching rule wins).

    The ``group`` named group, when present, names the speaker or sound family; files sharing it form one
    source and so always land in the same split. ``label=None`` excludes the files (ambiguous content).
    """

    package: str
    pattern: str
    label: str | None
    animal: bool = False  # an animal call: what the model takes for a scream

    def match(self, path: str) -> re.Match[str] | None:
        return re.search(self.pattern, path, flags=re.IGNORECASE)


# Vocal pain/death cries are "scream"; shouted team calls, taunts and battle announcers are "shout"; calm
# radio, tutorial and unit voice lines (and laughter) are "speech"; gun, cannon and explosion recordings are
# "impact"; ambience, machinery, music, footsteps, pickups, animals and weather are "background".
RULES: tuple[FileRule, ...] = (
    # OpenArena (Quake III engine): player models "sarge" and "neko", team voices, weapons, world ambience.
    FileRule("openarena", r"sound/player/(?P<group>\w+)/(death|pain|fall|falling|drown|gasp)\w*\.\w+$", "scream"),
    FileRule("openarena", r"sound/player/(?P<group>\w+)/taunt\.\w+$", "shout"),
    FileRule("openarena", r"sound/voices/(?P<group>\w+)/", "speech"),
    FileRule("openarena", r"sound/weapons/(?P<group>machinegun)/machgf", "impact"),
    FileRule("openarena", r"sound/weapons/(?P<group>shotgun|vulcan)/\w*f\d", "impact"),
    FileRule("openarena", r"sound/weapons/(?P<group>rocket|grenade|proxmine)/\w*(lx|b\d|expl)", "impact"),
    FileRule("openarena", r"sound/items/(?P<group>kam)_explode", "impact"),
    FileRule("openarena", r"sound/world/(new/|ambient/x_)?(moan|growl|painwind|drowning|portal|tele)", None),
    FileRule("openarena", r"sound/(?P<group>world)/", "background"),
    FileRule("openarena", r"sound/player/(?P<group>footsteps)/", "background"),
    FileRule("openarena", r"sound/(?P<group>movers|items)/", "background"),
    FileRule("openarena", r"^(?P<group>music)/", "background"),
    # Nexuiz: nine player models with pain/death cries and shouted team "coms", announcers, weapons, ambience.
    FileRule("nexuiz", r"sound/player/(?P<group>[\w-]+)/player/(death|pain|fall|falling|drown|gasp)", "scream"),
    FileRule("nexuiz", r"sound/player/(?P<group>torus)/(death|pain|fall|drown|gasp)", "scream"),
    FileRule("nexuiz", r"sound/player/(?P<group>[\w-]+)/coms/", "shout"),
    FileRule(
        "nexuiz",
        r"sound/player/(?P<group>torus)/(attack|coverme|flagseen|hooah|incoming|letsgo|needhelp"
        r"|taunt|teamshoot|waypoint)",
        "shout",
    ),
    FileRule("nexuiz", r"sound/announcer/(?P<group>male)/", "shout"),
    FileRule("nexuiz", r"sound/announcer/(?P<group>robotic)/", "speech"),
    FileRule("nexuiz", r"sound/(?P<group>tutorial)/\d", "speech"),
    FileRule(
        "nexuiz",
        r"sound/weapons/(?P<group>campingrifle|grenade|rocket|shotgun|uzi|hagar)_(fire\d?|impact|det)"
        r"\.",
        "impact",
    ),
    FileRule("nexuiz", r"sound/weapons/(?P<group>hagexp)\d", "impact"),
    FileRule("nexuiz", r"sound/weapons/(?P<group>tuba)_note", "background"),
    FileRule("nexuiz", r"sound/weapons/(?P<group>brass|casings)\d", "background"),
    FileRule("nexuiz", r"sound/misc/(?P<group>metalfootstep|footstep|hitground|metalhitground)\d", "background"),
    FileRule("nexuiz", r"sound/(?P<group>ambient|desertfactory|weather)/", "background"),
    # Warzone 2100: three screams, a "help!", radio speech, war effects, vehicles. The multiplayer taunts
    # ("time to die", "had enough?", maniacal laughs) are banter in character voices, two of the three at a
    # median pitch of 75-90 Hz, a speaking voice rather than a yell, so neither "shout" nor calm "speech"
    # fits them: excluded (dataset 3). As "shout", the one taunt voice in validation made 130 of its 500
    # shout clips and 122 of the distress clips missed at 5 % false positives.
    FileRule("warzone2100", r"audio/sfx/misc/(?P<group>scream)", "scream"),
    FileRule("warzone2100", r"audio/sfx/misc/(?P<group>help)", "shout"),
    FileRule("warzone2100", r"audio/taunts/", None),
    FileRule("warzone2100", r"audio/sfx/(?P<group>explons)/(?!squish|richet)", "impact"),
    FileRule(
        "warzone2100",
        r"audio/sfx/weapons/(?P<group>asltmg|gaussgun|hivelcan|lrgcan|medcan|mgbar|mgheavy"
        r"|mgtower|mortar|rapdcan|rocket|smlcan)",
        "impact",
    ),
    FileRule("warzone2100", r"audio/sfx/(?P<group>vehicle|building)/", "background"),
    FileRule("warzone2100", r"audio/(?P<group>nexus)/laugh", "speech"),
    FileRule(
        "warzone2100",
        r"^(audio/)?(?P<group>memressp|tutorial|extra|countdown|coltive|trnsppil|vtoltalk"
        r"|proxmessages|nexus|sequenceaudio)/",
        "speech",
    ),
    # MegaGlest: human unit death cries and spoken acknowledgements; tileset ambience, animals, music.
    FileRule("megaglest", rf"(?P<group>[\w/]*?(?:{_HUMAN_UNITS}))\w*_die\d*\.wav$", "scream"),
    FileRule("megaglest", rf"(?P<group>[\w/]*?(?:{_HUMAN_UNITS}))\w*_(ack|select)\d*\.wav$", "speech"),
    FileRule("megaglest", r"(?P<group>tech_building|magic_building)_fall", "impact"),
    FileRule("megaglest", r"(?P<group>cow|pig|sheep|chicken|bull|ele)(_\w+)?\d*\.wav$", "background", animal=True),
    FileRule("megaglest", r"tilesets/(?P<group>\w+)/sounds/", "background"),
    FileRule("megaglest", r"(?P<group>music|water_sounds)/", "background"),
    # FreeDink: a woman's scream, music and everyday effects.
    FileRule("freedink", r"(?P<group>wscream)\.wav$", "scream"),
    FileRule("freedink", r"(?P<group>\d+|denube|lovin)\.ogg$", "background"),
    FileRule("freedink", r"(?P<group>bird1)\.wav$", "background", animal=True),
    FileRule("freedink", r"(?P<group>fire|burn|stairs|open|gold|save|secret|sel1)\.wav$", "background"),
    # 0 A.D.: human death cries; unit voices in Greek, Latin, Persian and Meroitic; building, farming, mining
    # and lumbering work, footsteps, animals, weather, water, music; collapsing buildings and siege hits.
    # Voiced orders to attack or advance may be called out, so they are left out; weapon hits and animal
    # deaths too (neither an everyday sound nor a bang).
    FileRule("0ad", r"audio/actor/(?P<group>human/death/(fe)?(male_)?death)_", "scream"),
    FileRule("0ad", r"audio/voice/\w+/civ/civ_(fe)?male_(attack|to_war|forward|go_out_against|retreat)", None),
    FileRule("0ad", r"audio/voice/(?P<group>\w+/civ/civ_(fe)?male)_", "speech"),
    FileRule("0ad", r"audio/attack/(?P<group>destruction|siege)/", "impact"),
    FileRule("0ad", r"audio/(actor/(fauna|mounted)/death|actor/ship/warship_death|attack)/", None),
    FileRule("0ad", r"audio/(?P<group>actor/fauna/animal)/", "background", animal=True),
    FileRule(
        "0ad",
        r"audio/(?P<group>resource/\w+|ambient/\w+|actor/(fauna|human|mounted)/movement"
        r"|actor/(singlesteps|gate|ship)|interface/(select|complete|ui)|music|voice/global)/",
        "background",
    ),
    # SuperTuxKart: the Wilhelm scream, kart crashes and an explosion, everyday and machine effects (engines,
    # rain, rivers, birds, clocks, hammering, a bowling roll), music. Cartoon weapon and fireworks effects and
    # a grunt and an airport announcement are left out.
    FileRule("supertuxkart", r"sfx/(?P<group>WilhelmScream)\.", "scream"),
    FileRule("supertuxkart", r"sfx/(?P<group>explosion|crash)\d?\.", "impact"),
    FileRule(
        "supertuxkart",
        r"sfx/(ugh|break|shoot|strike|swatter|fireworks_show|bubblegum_explode|sara_airport_pa)\.",
        None,
    ),
    FileRule("supertuxkart", r"sfx/(?P<group>[a-z]+)", "background"),
    FileRule("supertuxkart", r"tracks/\w+/(nolok_speech|intro2)\.", None),
    FileRule("supertuxkart", r"^(?P<group>music|tracks|karts|library)/", "background"),
)

_AUDIO_SUFFIXES = (".wav", ".ogg", ".flac")


@dataclass(frozen=True)
class Recording:
    """One labelled sound file inside a package (``location`` is an archive or a directory)."""

    package: str
    location: str
    member: str
    label: str
    source_id: str
    animal: bool = False


def _rule_family(package: str) -> str:
    return package.removesuffix("-data").removesuffix("-088")


def _list_members(location: str) -> list[str]:
    if location.endswith((".pk3", ".wz", ".zip")):
        with zipfile.ZipFile(location) as archive:
            return [name for name in archive.namelist() if name.lower().endswith(_AUDIO_SUFFIXES)]
    root = Path(location)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in _AUDIO_SUFFIXES)


def _short_group(group: str) -> str:
    """MegaGlest groups are unit paths; keep only faction/unit/voice so ids stay readable."""
    for noise in ("techs/megapack/", "factions/", "units/", "commondata/"):
        group = group.replace(noise, "")
    return group.replace("/sounds/", "/").replace("sounds/", "").lower()


def installed(package: str) -> bool:
    """Whether a package's sound files are present (we check the files we read, not dpkg's database)."""
    return all(Path(location).exists() for location in PACKAGE_LOCATIONS[package])


def find_recordings(packages: Sequence[str]) -> list[Recording]:
    """Every labelled sound file in ``packages``, classified by ``RULES``."""
    unknown = [p for p in packages if p not in PACKAGE_LOCATIONS]
    if unknown:
        raise DatasetError(f"unknown sound package(s) {unknown}; allowed: {sorted(PACKAGE_LOCATIONS)}")
    missing = [p for p in packages if not installed(p)]
    if missing:
        raise MissingPackageError(missing, "the recorded-sound part of the dataset")
    found: list[Recording] = []
    for package in packages:
        for location in PACKAGE_LOCATIONS[package]:
            for member in _list_members(location):
                matched = _first_rule(package, member)
                if matched is None:
                    continue
                rule, source_id = matched
                if rule.label is not None:
                    found.append(Recording(package, location, member, rule.label, source_id, rule.animal))
    return found


def _first_rule(package: str, member: str) -> tuple[FileRule, str] | None:
    """The first rule matching the file at package-relative path ``member``, with the source id it gives."""
    for rule in RULES:
        if rule.package != _rule_family(package):
            continue
        matched = rule.match(member)
        if matched is not None:
            group = matched.groupdict().get("group") or str(Path(member).parent)
            return rule, f"{package}:{_short_group(group)}"
    return None


def classify(package: str, member: str) -> tuple[str, str] | None:
    """(label, source id) of the file at package-relative path ``member`` by the first matching rule; None
    when no rule matches or the first match excludes it."""
    matched = _first_rule(package, member)
    if matched is None or matched[0].label is None:
        return None
    return matched[0].label, matched[1]


def to_mono_16k(samples: npt.NDArray[np.floating], rate: int) -> Audio:
    """Down-mix and resample any decoded audio to our 16 kHz mono float32."""
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    mono = np.asarray(mono, dtype=np.float32)
    if rate != SAMPLE_RATE:
        mono = np.asarray(soxr.resample(mono, rate, SAMPLE_RATE), dtype=np.float32)
    return mono


@cache
def _archive(location: str) -> zipfile.ZipFile:
    """Open each game archive once: their central directories hold thousands of entries."""
    return zipfile.ZipFile(location)


def read_recording(recording: Recording) -> Audio:
    """Decode one recording to 16 kHz mono float32."""
    try:
        if recording.location.endswith((".pk3", ".wz", ".zip")):
            data, rate = soundfile.read(
                io.BytesIO(_archive(recording.location).read(recording.member)), dtype="float32"
            )
        else:
            data, rate = soundfile.read(Path(recording.location) / recording.member, dtype="float32")
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise DatasetError(f"cannot decode {recording.package}:{recording.member}: {error}") from error
    return to_mono_16k(data, rate)
