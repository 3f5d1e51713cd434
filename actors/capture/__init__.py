"""Capture: audio sources normalised to 16 kHz mono, cut into chunks and published as events, one actor per stream."""

from actors.capture.actor import CaptureActor, CaptureReport, EventPublisher
from actors.capture.blocks import AudioBlock, AudioSource, SourceError
from actors.capture.chunker import Chunk, Chunker, decode_pcm16, encode_pcm16
from actors.capture.files import FileSource
from actors.capture.microphone import MicrophoneSource
from actors.capture.network import ReconnectPolicy, UrlSource
from actors.capture.normalise import TARGET_SAMPLE_RATE, NormalisedAudio, Normaliser, expected_samples
from actors.capture.raw_pcm import RawPcmFormat, RawPcmSource
from actors.capture.sources import SourceOptions, open_source

__all__ = [
    "TARGET_SAMPLE_RATE",
    "AudioBlock",
    "AudioSource",
    "CaptureActor",
    "CaptureReport",
    "Chunk",
    "Chunker",
    "EventPublisher",
    "FileSource",
    "MicrophoneSource",
    "NormalisedAudio",
    "Normaliser",
    "RawPcmFormat",
    "RawPcmSource",
    "ReconnectPolicy",
    "SourceError",
    "SourceOptions",
    "UrlSource",
    "decode_pcm16",
    "encode_pcm16",
    "expected_samples",
    "open_source",
]
