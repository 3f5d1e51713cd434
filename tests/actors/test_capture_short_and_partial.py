"""Short and partly read inputs through a capture actor against the real broker.

A file cut off mid-way ends its stream normally, with what was never heard in the StreamEnded reason, which
`distress run` shows per stream.
"""

from __future__ import annotations

from pathlib import Path

from actors.capture import CaptureActor, CaptureReport, FileSource
from config import Settings
from events.bus import ConsumedEvent
from events.catalogue import StreamEnded
from tests.actors.audio_inputs import captured_events, tone, write_audio
from tests.actors.test_capture_actor import only


def capture(settings: Settings, stream_id: str, path: Path) -> tuple[CaptureReport, list[ConsumedEvent]]:
    bus = settings.bus()
    bus.ensure_topics()
    with bus.producer() as producer:
        report = CaptureActor(stream_id=stream_id, source=FileSource(path), publisher=producer,
                              chunk_samples=4000).run()
    return report, captured_events(bus)


def test_a_cut_off_file_ends_its_stream_with_what_was_never_heard(kafka_settings: Settings, tmp_path: Path) -> None:
    full = write_audio(tmp_path / "full.wav", tone(20.0, 16000, amplitude=0.1), 16000, subtype="PCM_16")
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: data.index(b"data") + 8 + 5 * 16000 * 2])  # header: 20 s; data: 5 s
    report, received = capture(kafka_settings, "cut", cut)
    ended = only(received, StreamEnded, "cut").event
    assert isinstance(ended, StreamEnded)
    assert ended.reason.startswith("eof; input only partly read: only 5.0 s of the 20.0 s the file declares")
    assert report.outcome == "ended" and report.reason == ended.reason
    assert (report.audio_seconds, report.declared_seconds, len(report.warnings)) == (5.0, 20.0, 1)
