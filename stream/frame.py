"""The envelope every stage receives and returns.

In-place policy (one place, tested in tests/stream/test_frame.py): ``image_bgr`` is made
read-only by the source thread and no stage may modify it; a stage that draws creates a new
array and stores it as ``overlay_bgr``. Stages add entries to ``results`` and ``timings_ms``.
When a frame fans out to parallel branches each branch gets its own ``results`` and
``timings_ms`` dicts (``branch_copy``) sharing the same read-only image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Frame:
    """One video frame and everything computed for it.

    Attributes:
        source_id: name of the source that produced the frame (credentials redacted).
        seq: per-source sequence number, 0-based, strictly increasing (gaps mean drops).
        pts_s: presentation timestamp in seconds from the source, if it has one.
        capture_ns: ``time.monotonic_ns()`` when the frame left the source.
        image_bgr: (H, W, 3) uint8 BGR image, read-only.
        results: results by name (for example ``"instances"``, ``"semantic"``).
        timings_ms: per-stage processing time in milliseconds.
        overlay_bgr: (H, W, 3) uint8 image drawn by an overlay stage, or None.
        metadata: what the source knows about this image (JSON-able: a slice's pixel spacing
            in mm, a tile's window in the full map); set by the source, read-only for stages
            and shared by branch copies.
    """

    source_id: str
    seq: int
    pts_s: float | None
    capture_ns: int
    image_bgr: np.ndarray
    results: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    overlay_bgr: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        img = self.image_bgr
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            shape = getattr(img, "shape", None)
            dtype = getattr(img, "dtype", type(img).__name__)
            raise ValueError(f"Frame.image_bgr: expected (H, W, 3) uint8, got shape {shape} dtype {dtype}")
        if img.shape[0] == 0 or img.shape[1] == 0:
            raise ValueError(f"Frame.image_bgr: expected a non-empty image, got shape {img.shape}")

    @property
    def key(self) -> tuple[str, int]:
        """(source_id, seq): the identity joins use."""
        return (self.source_id, self.seq)

    @property
    def size_hw(self) -> tuple[int, int]:
        return (int(self.image_bgr.shape[0]), int(self.image_bgr.shape[1]))

    def age_ms(self, now_ns: int | None = None) -> float:
        """Milliseconds since capture."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        return (now - self.capture_ns) / 1e6

    def branch_copy(self) -> Frame:
        """A shallow copy for a parallel branch: same image, own results and timings."""
        return Frame(
            source_id=self.source_id,
            seq=self.seq,
            pts_s=self.pts_s,
            capture_ns=self.capture_ns,
            image_bgr=self.image_bgr,
            results=dict(self.results),
            timings_ms=dict(self.timings_ms),
            overlay_bgr=self.overlay_bgr,
            metadata=self.metadata,
        )

    def display_bgr(self) -> np.ndarray:
        """What a video sink shows: the overlay if a stage drew one, else the image."""
        return self.overlay_bgr if self.overlay_bgr is not None else self.image_bgr


class EndOfStream:
    """Sentinel that travels the queues after the last frame.

    Attributes:
        reason: "eos" (the source ended), "stop" (a signal or a stop request),
            "error" (a stage or source failed).
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str = "eos") -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"EndOfStream({self.reason!r})"
