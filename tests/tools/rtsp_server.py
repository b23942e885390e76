#!/usr/bin/python3
"""A loopback RTSP server for the fault tests (GStreamer RTSP server, Debian packages).

    /usr/bin/python3 tests/tools/rtsp_server.py VIDEO.mp4 PORT   # rtsp://127.0.0.1:PORT/demo

Serves an H.264 MP4 file; every client session plays it from the start. Runs with the
system Python because PyGObject and the GStreamer introspection data come from Debian
(python3-gi, gir1.2-gst-rtsp-server-1.0).
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    video, port = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( filesrc location={video} ! qtdemux ! h264parse ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(False)
    server.get_mount_points().add_factory("/demo", factory)
    server.attach(None)
    print(f"rtsp://127.0.0.1:{port}/demo", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
