"""Which audio source a command-line string names: a file, a network stream, a microphone or raw PCM on stdin.

Each kind is a module of its own (``files``, ``network``, ``microphone``, ``raw_pcm``), all yielding the
``AudioBlock``s of ``blocks``; this module parses the name and passes each the options it needs. Nothing is opened
here: a source's own errors surface from its ``blocks``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

from actors.capture.blocks import AudioSource, SourceError
from actors.capture.files import FileSource
from actors.capture.microphone import MICROPHONE, MicrophoneSource
from actors.capture.network import URL_SCHEMES, ReconnectPolicy, UrlSource
from actors.capture.raw_pcm import RawPcmFormat, RawPcmSource
from config.redaction import redact_url
from config.settings import CaptureConfig

STDIN: Final = "-"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True, kw_only=True)
class SourceOptions:
    """What opening a source needs besides its name: network timeouts, reconnection, stdin's PCM layout."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    raw_pcm: RawPcmFormat = field(default_factory=RawPcmFormat)

    @classmethod
    def from_config(cls, capture: CaptureConfig, raw_pcm: RawPcmFormat | None = None) -> SourceOptions:
        """The options the ``capture`` settings describe (stdin's PCM layout comes from the command line)."""
        return cls(
            connect_timeout_s=capture.connect_timeout_s,
            read_timeout_s=capture.read_timeout_s,
            reconnect=ReconnectPolicy(
                max_attempts=capture.reconnect_max_attempts,
                base_delay_s=capture.reconnect_base_delay_s,
                max_delay_s=capture.reconnect_max_delay_s,
            ),
            raw_pcm=raw_pcm or RawPcmFormat(),
        )


def open_source(
    spec: str,
    options: SourceOptions = SourceOptions(),
    *,
    stdin: BinaryIO | None = None,
) -> AudioSource:
    """The source a command-line string names: ``-`` (stdin), ``mic``/``mic:DEVICE``, a URL, or a file path.

    Nothing is opened yet: errors of the source itself surface from ``blocks`` (so they become StreamFailed);
    only a malformed string raises ``SourceError`` here. Write ``./mic`` for a file called ``mic``.
    """
    if not spec.strip():
        raise SourceError(repr(spec), "empty source: give a file path, a URL, 'mic' or '-'")
    if spec == STDIN:
        if stdin is None:
            raise SourceError("stdin", "no input stream given for '-'")
        return RawPcmSource(stream=stdin, pcm_format=options.raw_pcm)
    if spec == MICROPHONE or spec.startswith(MICROPHONE + ":"):
        device = spec[len(MICROPHONE) + 1 :] or None
        return MicrophoneSource(device)
    scheme = _SCHEME.match(spec)
    if scheme is not None:
        if scheme.group(1).lower() not in URL_SCHEMES:
            raise SourceError(
                redact_url(spec), f"unsupported URL scheme {scheme.group(1)!r}; use one of {', '.join(URL_SCHEMES)}"
            )
        return UrlSource(
            spec,
            connect_timeout_s=options.connect_timeout_s,
            read_timeout_s=options.read_timeout_s,
            reconnect=options.reconnect,
        )
    return FileSource(Path(spec))
