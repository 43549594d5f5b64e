"""``gst:`` sinks: a GStreamer pipeline starting with appsrc (RTP/UDP out, encoders, displays)."""

from __future__ import annotations

import os
from typing import Any

from segstream.stream.errors import SinkError
from segstream.stream.frame import Frame
from segstream.stream.gst import bus_error, load_gst
from segstream.stream.sinks.base import Sink
from segstream.stream.sources.base import redact


def _find_appsrc(pipeline):
    it = pipeline.iterate_elements()
    while True:
        ok, el = it.next()
        if ok != 1:
            return None
        if el.get_factory() is not None and el.get_factory().get_name() == "appsrc":
            return el


class GstSink(Sink):
    """Pushes BGR frames into ``appsrc`` of a GStreamer pipeline parsed by GStreamer.

    The appsrc caps are set from the first frame (BGR, its size, ``fps``). ``close`` sends
    end-of-stream and waits for it to reach the end, so muxers finalise their files.

    Args:
        description: e.g. ``appsrc ! videoconvert ! x264enc tune=zerolatency ! rtph264pay ! udpsink host=127.0.0.1 port=5000``.
        fps: frame rate announced in the caps.
        eos_timeout_s: how long ``close`` waits for end-of-stream to drain the pipeline.
    """

    def __init__(self, description: str, fps: float | None = None, eos_timeout_s: float = 3.0) -> None:
        self.description = description
        self.name = "gst:" + redact(description)
        self.fps = fps or 30.0
        self.eos_timeout_s = eos_timeout_s
        self._pipeline: Any = None  # Gst.Pipeline (gi objects carry no static types)
        self._src: Any = None
        self._size_wh: tuple[int, int] | None = None
        self._pts = 0
        self.frames_written = 0

    def open(self) -> None:
        Gst = load_gst(SinkError)
        try:
            pipeline = Gst.parse_launch(self.description)
        except Exception as exc:  # GLib.Error
            raise SinkError(f"{self.name}: GStreamer cannot parse the pipeline: {exc}") from None
        src = _find_appsrc(pipeline)
        if src is None:
            raise SinkError(f"{self.name}: the pipeline must start with appsrc (appsrc ! videoconvert ! ...)")
        src.set_property("format", Gst.Format.TIME)
        src.set_property("is-live", True)
        src.set_property("block", True)
        src.set_property("max-bytes", 64 * 1024 * 1024)
        self._pipeline, self._src = pipeline, src

    def _start(self, w: int, h: int) -> None:
        Gst = load_gst(SinkError)
        num = int(round(self.fps * 1000))
        self._src.set_property(
            "caps", Gst.Caps.from_string(f"video/x-raw,format=BGR,width={w},height={h},framerate={num}/1000")
        )
        if self._pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            msg = bus_error(self._pipeline) or "state change failed"
            raise SinkError(f"{self.name}: cannot start: {msg}")
        self._size_wh = (w, h)

    def write(self, frame: Frame) -> None:
        Gst = load_gst(SinkError)
        img = frame.display_bgr()
        h, w = img.shape[:2]
        if self._pipeline is None:
            self.open()
        if self._size_wh is None:
            self._start(w, h)
        elif (w, h) != self._size_wh:
            import cv2

            img = cv2.resize(img, self._size_wh, interpolation=cv2.INTER_AREA)
        buf = Gst.Buffer.new_wrapped(img.tobytes())
        duration = int(1e9 / self.fps)
        buf.pts = self._pts
        buf.duration = duration
        self._pts += duration
        if self._src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
            msg = bus_error(self._pipeline) or "the pipeline stopped accepting buffers"
            raise SinkError(f"{self.name}: frame {frame.seq}: {msg}")
        self.frames_written += 1

    def close(self) -> None:
        if self._pipeline is None:
            return
        Gst = load_gst(SinkError)
        try:
            if self._size_wh is not None:
                self._src.emit("end-of-stream")
                bus = self._pipeline.get_bus()
                msg = bus.timed_pop_filtered(int(self.eos_timeout_s * 1e9), Gst.MessageType.EOS | Gst.MessageType.ERROR)
                if msg is not None and msg.type == Gst.MessageType.ERROR:
                    err, _ = msg.parse_error()
                    raise SinkError(f"{self.name}: error while finalising: {err.message}")
        finally:
            self._pipeline.set_state(Gst.State.NULL)
            self._pipeline = None


class DisplaySink(GstSink):
    """A window on the local display through GStreamer's autovideosink."""

    def __init__(self, fps: float | None = None) -> None:
        super().__init__("appsrc ! videoconvert ! autovideosink sync=false", fps=fps)
        self.name = "display://0"

    def open(self) -> None:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise SinkError(
                "display://: no display here (DISPLAY and WAYLAND_DISPLAY unset); "
                "write a video file instead, e.g. --output out.mp4"
            )
        super().open()
