"""One factory from URI to sink.

``out.mp4``/``out.avi`` video, ``frames/`` image folder (trailing slash or existing folder),
``results.jsonl`` JSON Lines, ``ws://127.0.0.1:8765?token=T`` a WebSocket results server,
``display://0`` a window, ``gst:appsrc ! ...`` a GStreamer
pipeline, ``null://`` nothing.
"""

from __future__ import annotations

import os

from segstream.stream.errors import ConfigError
from segstream.stream.sinks.base import NullSink, Sink
from segstream.stream.sinks.files import FOURCC_BY_SUFFIX, ImageFolderSink, JsonlSink, VideoFileSink


def open_sink(uri: str, *, fps: float | None = None) -> Sink:
    """Returns the sink for a URI (``open()`` checks the destination).

    Args:
        uri: see the module docstring.
        fps: frame rate for video outputs (the source's, usually).
    """
    uri = str(uri).strip()
    if not uri:
        raise ConfigError("empty output; give a file (.mp4, .avi, .jsonl), a folder/, display://0, gst:... or null://")
    if uri.startswith("gst:"):
        from segstream.stream.sinks.gst import GstSink

        return GstSink(uri[4:].strip(), fps=fps)
    if uri.startswith("display://"):
        from segstream.stream.sinks.gst import DisplaySink

        return DisplaySink(fps=fps)
    if uri.startswith(("ws://", "wss://")):
        from segstream.stream.sinks.websocket import WebSocketSink

        if uri.startswith("wss://"):
            raise ConfigError("wss:// is not served directly; put a TLS proxy in front of ws://127.0.0.1:PORT")
        return WebSocketSink.from_uri(uri)
    if uri in ("null://", "null"):
        return NullSink()
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigError(f"{uri}: unknown output scheme; use a file, a folder/, display://0, gst:... or null://")
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    suffix = os.path.splitext(uri)[1].lower()
    if suffix in FOURCC_BY_SUFFIX:
        return VideoFileSink(uri, fps=fps)
    if suffix in (".jsonl", ".ndjson"):
        return JsonlSink(uri)
    if uri.endswith(("/", os.sep)) or os.path.isdir(uri) or not suffix:
        return ImageFolderSink(uri)
    raise ConfigError(f"{uri}: unknown output type {suffix!r}; use .mp4/.avi video, .jsonl, a folder/ or null://")
