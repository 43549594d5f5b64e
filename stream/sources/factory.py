"""One factory from URI to source.

=====================================  =============================================
URI                                    source
=====================================  =============================================
``clip.mp4``, ``file:///x/clip.mp4``   VideoFileSource (blocks, never drops)
``frames/``, ``frames/*.png``, ``a.jpg``  ImageFolderSource
``0``, ``/dev/video0``                 CameraSource (V4L2, live)
``csi://0``                            CsiSource (Jetson nvarguscamerasrc, live)
``rtsp://``, ``http(s)://``, ``rtmp://``  NetworkSource (FFmpeg, live, reconnects)
``gst:PIPELINE ! appsink``             GstSource
``synthetic://?width=&height=&fps=&frames=&live=``  SyntheticSource
``stack:///series?spacing=&thickness=&window=``  SliceStackSource (PNG/TIFF or DICOM slices)
``tiles:///map.tif?tile=&overlap=&gsd=``  TileSource (a large image as overlapping tiles)
=====================================  =============================================
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qs, urlsplit

from segstream.stream.errors import ConfigError
from segstream.stream.sources.base import Source
from segstream.stream.sources.file import IMAGE_SUFFIXES, ImageFolderSource, VideoFileSource

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")

_SYNTH_KEYS = {"width": int, "height": int, "fps": float, "frames": int, "live": int, "seed": int}


def _query(uri: str, allowed: dict[str, type]) -> dict:
    out = {}
    for key, values in parse_qs(urlsplit(uri).query, keep_blank_values=True).items():
        if key not in allowed:
            raise ConfigError(f"{uri}: unknown option {key!r}; allowed: {', '.join(allowed)}")
        try:
            out[key] = allowed[key](values[-1])
        except ValueError:
            raise ConfigError(f"{uri}: option {key}={values[-1]!r} is not a valid {allowed[key].__name__}") from None
    return out


def open_source(uri: str, *, network_options: dict | None = None) -> Source:
    """Returns the (unopened) source for a URI; ``open()`` raises if it cannot be read.

    Args:
        uri: see the module table.
        network_options: keyword arguments for NetworkSource (timeouts, backoff).
    """
    uri = str(uri).strip()
    if not uri:
        raise ConfigError("empty source; give a file, folder, camera, URL or synthetic:// URI")
    if uri.startswith("gst:"):
        from segstream.stream.sources.gst import GstSource

        return GstSource(uri[4:].strip())
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme == "synthetic":
        from segstream.stream.sources.synthetic import SyntheticSource

        opts = _query(uri, _SYNTH_KEYS)
        if "live" in opts:
            opts["live"] = bool(opts["live"])
        if opts.get("frames", 1) <= 0:
            opts["frames"] = None  # frames=0: endless
        try:
            return SyntheticSource(**opts)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if scheme in ("stack", "tiles"):
        from segstream.stream.sources.stack import STACK_OPTIONS, stack_source_from_uri
        from segstream.stream.sources.tiles import TILE_OPTIONS, tile_source_from_uri

        options, make = {
            "stack": (STACK_OPTIONS, stack_source_from_uri),
            "tiles": (TILE_OPTIONS, tile_source_from_uri),
        }[scheme]
        parts = urlsplit(uri)
        return make(uri, parts.netloc + parts.path, _query(uri, options))
    if scheme == "csi":
        from segstream.stream.sources.gst import CsiSource

        ident = urlsplit(uri).netloc or "0"
        if not ident.isdigit():
            raise ConfigError(f"{uri}: expected csi://N with a sensor number")
        return CsiSource(int(ident))
    if scheme in NETWORK_SCHEMES:
        from segstream.stream.sources.live import NetworkSource

        return NetworkSource(uri, **(network_options or {}))
    if scheme == "file":
        uri = urlsplit(uri).path
    elif scheme:
        raise ConfigError(
            f"{scheme}:// sources are not supported; use a file, folder, camera, "
            f"{'/'.join(NETWORK_SCHEMES)}, csi://, gst:, synthetic://, stack:// or tiles://"
        )
    m = re.fullmatch(r"(?:/dev/video)?(\d+)", uri)
    if m and not os.path.exists(uri) or uri.startswith("/dev/video"):
        from segstream.stream.sources.live import CameraSource

        if not m:
            raise ConfigError(f"{uri}: expected /dev/videoN")
        return CameraSource(int(m.group(1)))
    if os.path.isdir(uri) or any(c in uri for c in "*?[") or uri.lower().endswith(IMAGE_SUFFIXES):
        return ImageFolderSource(uri)
    return VideoFileSource(uri)
