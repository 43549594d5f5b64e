"""``gst:`` sources: any GStreamer pipeline that ends in an appsink, parsed by GStreamer itself.

The pipeline text goes to ``Gst.parse_launch`` (never to a shell). The appsink's caps are
set to BGR if the pipeline leaves them open, so end it with ``videoconvert ! appsink``.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from segstream.stream.errors import SourceError
from segstream.stream.gst import bus_error, load_gst
from segstream.stream.sources.base import ImageConverter, Source, SourceItem, redact

_PULL_NS = 50_000_000  # 50 ms: how often a blocked pull checks the stop flag


def _find_element(pipeline, factory: str):
    it = pipeline.iterate_elements()
    while True:
        ok, el = it.next()
        if ok != 1:  # Gst.IteratorResult.OK
            return None
        if el.get_factory() is not None and el.get_factory().get_name() == factory:
            return el


def sample_to_bgr(sample, origin: str) -> np.ndarray:
    """Copies a GStreamer sample with BGR (or BGRx/GRAY8) video caps into a numpy array."""
    caps = sample.get_caps().get_structure(0)
    w, h = caps.get_value("width"), caps.get_value("height")
    fmt = caps.get_value("format")
    channels = {"BGR": 3, "RGB": 3, "BGRx": 4, "BGRA": 4, "GRAY8": 1}.get(fmt)
    if channels is None:
        raise SourceError(f"{origin}: appsink got format {fmt}; add 'videoconvert !' before the appsink")
    Gst = load_gst(SourceError)
    buf = sample.get_buffer()
    ok, info = buf.map(Gst.MapFlags.READ)
    if not ok:
        raise SourceError(f"{origin}: could not map a GStreamer buffer")
    try:
        stride = info.size // h
        arr = np.frombuffer(info.data, np.uint8, count=stride * h).reshape(h, stride)[:, : w * channels]
        img = arr.reshape(h, w, channels).copy()
    finally:
        buf.unmap(info)
    if fmt == "RGB":
        img = img[:, :, ::-1].copy()
    return img


class GstSource(Source):
    """Frames from a GStreamer pipeline ending in appsink.

    Args:
        description: the pipeline, e.g. ``videotestsrc num-buffers=30 ! videoconvert ! appsink``.
        live: treat as a live source (drop policy); by default a pipeline reading a file is not live.
    """

    def __init__(self, description: str, live: bool | None = None) -> None:
        self.description = description
        self.name = "gst:" + redact(description)
        self.live = ("filesrc" not in description) if live is None else live
        self._pipeline: Any = None  # Gst.Pipeline (gi objects carry no static types)
        self._sink: Any = None
        self._convert = ImageConverter(self.name)
        self._count = 0

    def open(self) -> None:
        Gst = load_gst(SourceError)
        try:
            pipeline = Gst.parse_launch(self.description)
        except Exception as exc:  # GLib.Error: the pipeline text is wrong
            raise SourceError(f"{self.name}: GStreamer cannot parse the pipeline: {exc}") from None
        sink = _find_element(pipeline, "appsink")
        if sink is None:
            raise SourceError(f"{self.name}: the pipeline must end in an appsink (… ! videoconvert ! appsink)")
        if sink.get_property("caps") is None:
            sink.set_property("caps", Gst.Caps.from_string("video/x-raw,format=BGR"))
        if self.live:
            sink.set_property("max-buffers", 1)
            sink.set_property("drop", True)
        sink.set_property("sync", False)
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            msg = bus_error(pipeline) or "state change failed"
            pipeline.set_state(Gst.State.NULL)
            raise SourceError(f"{self.name}: cannot start: {redact(msg)}")
        self._pipeline, self._sink = pipeline, sink

    def read(self, stop: threading.Event) -> SourceItem | None:
        while not stop.is_set():
            sample = self._sink.emit("try-pull-sample", _PULL_NS)
            if sample is not None:
                pts_ns = sample.get_buffer().pts
                self._count += 1
                pts = pts_ns / 1e9 if pts_ns is not None and pts_ns < (1 << 62) else None
                return SourceItem(self._convert(sample_to_bgr(sample, self.name)), pts)
            err = bus_error(self._pipeline)
            if err:
                raise SourceError(f"{self.name}: {redact(err)}")
            if self._sink.is_eos():
                return None
        return None

    def close(self) -> None:
        if self._pipeline is not None:
            Gst = load_gst(SourceError)
            self._pipeline.set_state(Gst.State.NULL)
            self._pipeline = None

    def stats(self) -> dict:
        return {"frames": self._count, "converted": self._convert.converted}


class CsiSource(GstSource):
    """A Jetson CSI camera (nvarguscamerasrc); runs only on a Jetson."""

    def __init__(self, sensor_id: int, width: int = 1280, height: int = 720, fps: int = 30) -> None:
        from segstream.stream.sources.live import csi_pipeline

        super().__init__(csi_pipeline(sensor_id, width, height, fps), live=True)
        self.name = f"csi://{sensor_id}"
