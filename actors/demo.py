"""The demo's pieces, shared by `distress demo` and the streams benchmark: its recording, generated on first use,
and a local endpoint that receives its alerts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from config import Settings
from config.alerting import AlertRoute

DEMO_SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "make_demo_audio.py"


class DemoRecordingError(Exception):
    """The demo recording could not be generated; the message has the generator's own error."""


def ensure_demo_recording(settings: Settings, on_generate: Callable[[Path], None] = lambda recording: None) -> Path:
    """The demo recording in the data directory, generated (deterministically, see the script) on first use, which
    ``on_generate`` is told of first: it takes a few seconds."""
    recording = settings.data_dir / "demo" / "demo.wav"
    if not recording.exists():
        on_generate(recording)
        made = subprocess.run([sys.executable, str(DEMO_SCRIPT), str(recording)], capture_output=True, text=True)
        if made.returncode != 0:
            last = made.stderr.strip().splitlines()[-1:] or [f"exit code {made.returncode}"]  # the cause, not a trace
            raise DemoRecordingError(f"could not generate the demo recording into {recording}: {last[0]}")
    return recording


@contextmanager
def local_alert_sink(on_alert: Callable[[dict[str, Any]], None]) -> Iterator[str]:
    """A local HTTP endpoint taking Apprise ``json://`` notifications; yields the URL to route alerts to."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                alert = json.loads(body)
            except ValueError:
                alert = {"title": "", "message": body.decode(errors="replace")}
            on_alert(alert if isinstance(alert, dict) else {"title": "", "message": str(alert)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # the callback decides what to show
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="alert-sink", daemon=True)
    thread.start()
    try:
        yield f"json://127.0.0.1:{server.server_address[1]}/alerts"
    finally:
        server.shutdown()
        server.server_close()


def with_sink_route(settings: Settings, sink_url: str) -> Settings:
    """The user's alerting configuration plus a route sending every incident to a local sink."""
    alerting = settings.alerting
    routed = alerting.model_copy(
        update={
            "channels": {**alerting.channels, "local-sink": sink_url},
            "routes": (*alerting.routes, AlertRoute(name="local-sink", notify=("local-sink",))),
        }
    )
    return settings.model_copy(update={"alerting": routed})
