"""A real RTSP server for tests: gst-rtsp-server streaming a 440 Hz stereo tone as L16 over RTP.

Runs under the system Python (Debian's python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-base and
-good), not the project venv. Usage: ``python3 rtsp_server.py SECONDS``; prints the bound port, then serves
``rtsp://127.0.0.1:PORT/audio`` (each client gets its own SECONDS-long tone at 44.1 kHz) until killed.
"""

from __future__ import annotations

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402 - the versions must be chosen first

RATE = 44100
BUFFER_FRAMES = 441  # 10 ms buffers


def main(seconds: float) -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")  # any free port
    factory = GstRtspServer.RTSPMediaFactory()
    buffers = round(seconds * RATE / BUFFER_FRAMES)
    factory.set_launch(
        f"( audiotestsrc num-buffers={buffers} samplesperbuffer={BUFFER_FRAMES} freq=440 "
        f"! audio/x-raw,rate={RATE},channels=2 ! audioconvert ! rtpL16pay name=pay0 pt=96 )"
    )
    factory.set_shared(False)
    server.get_mount_points().add_factory("/audio", factory)
    server.attach(None)
    print(server.get_bound_port(), flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(float(sys.argv[1]))
