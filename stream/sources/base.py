"""What every source is: something that yields BGR uint8 images until it ends."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from segstream.stream.errors import SourceError


@dataclass
class SourceItem:
    """One image from a source.

    Attributes:
        image_bgr: (H, W, 3) uint8 BGR.
        pts_s: presentation timestamp in seconds, or None.
        metadata: what the source knows about the image (becomes ``Frame.metadata``).
    """

    image_bgr: np.ndarray
    pts_s: float | None = None
    metadata: dict | None = None


class Source:
    """Base of every source.

    Attributes:
        name: printable identity (credentials redacted); becomes ``Frame.source_id``.
        live: True for cameras and network streams (the graph keeps the newest frame and
            counts drops); False for files, folders and synthetic frames (nothing dropped).
        fps: nominal frame rate, or None if unknown.
        frame_count: number of frames if known (files), else None.
    """

    name = "source"
    live = False
    fps: float | None = None
    frame_count: int | None = None

    def open(self) -> None:
        """Opens the device or file; raises SourceError with what to do if it cannot."""

    def read(self, stop: threading.Event) -> SourceItem | None:
        """Returns the next image, or None at the end of the stream or when ``stop`` is set.

        Never blocks much longer than a poll interval after ``stop`` is set.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Releases the device or file. Safe to call twice."""

    def stats(self) -> dict:
        """Source-specific counters for the metrics (reconnects, gaps, conversions)."""
        return {}


_CRED_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<cred>[^@/\s]+)@")


def redact(text: str) -> str:
    """Replaces ``user:password@`` in every URL inside ``text`` with ``***@``."""
    return _CRED_RE.sub(lambda m: m.group("scheme") + "***@", text)


def redact_url(url: str) -> str:
    """A URL without its credentials (user and password replaced by ***)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


class ImageConverter:
    """Turns whatever a decoder hands over into (H, W, 3) uint8 BGR, and counts conversions.

    Grayscale is expanded, BGRA loses alpha, 16-bit is scaled to 8-bit, float images in
    [0, 1] are scaled to 0-255. Empty images raise SourceError.
    """

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.converted = 0

    def __call__(self, img: np.ndarray, where: str = "") -> np.ndarray:
        if img is None or not isinstance(img, np.ndarray) or img.size == 0:
            shape = getattr(img, "shape", None)
            raise SourceError(f"{self.origin}{where}: got an empty image (shape {shape}); check the file or device")
        out = img
        if out.dtype == np.uint16:
            out = (out >> 8).astype(np.uint8)
        elif out.dtype.kind == "f":
            out = np.clip(out * (255.0 if float(np.nanmax(out)) <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        elif out.dtype != np.uint8:
            raise SourceError(f"{self.origin}{where}: unsupported pixel type {out.dtype}; expected 8 or 16-bit images")
        if out.ndim == 2:
            out = np.repeat(out[:, :, None], 3, axis=2)
        elif out.ndim == 3 and out.shape[2] == 1:
            out = np.repeat(out, 3, axis=2)
        elif out.ndim == 3 and out.shape[2] == 4:
            out = np.ascontiguousarray(out[:, :, :3])
        elif not (out.ndim == 3 and out.shape[2] == 3):
            raise SourceError(
                f"{self.origin}{where}: unsupported image shape {img.shape}; expected HxW, HxWx3 or HxWx4"
            )
        if out is not img:
            self.converted += 1
        return out


def wait_for_frame_time(t0: float, index: int, fps: float, stop: threading.Event) -> bool:
    """Sleeps until frame ``index`` of a clock started at ``t0`` (``time.monotonic()``) is due at
    ``fps``, waking every 50 ms to honour ``stop``; False when ``stop`` was set meanwhile."""
    due = t0 + index / fps
    while True:
        delay = due - time.monotonic()
        if delay <= 0:
            return True
        if stop.wait(min(delay, 0.05)):
            return False
