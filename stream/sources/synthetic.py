"""Generated frames for tests and benchmarks: ``synthetic://?width=W&height=H&fps=F&frames=N&live=0``."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from segstream.stream.sources.base import Source, SourceItem, wait_for_frame_time

_CACHE = 32  # distinct frames, cycled: generating 720p per frame would dominate a runtime bench


class SyntheticSource(Source):
    """Moving shapes on a gradient, cycled from a small cache of prebuilt frames.

    Args:
        width, height: frame size in pixels.
        fps: nominal rate; with ``live`` the source is paced at this rate in real time.
        frames: number of frames, or None for endless.
        live: behave as a live camera (paced, drop policy) instead of a file (as fast as
            the graph takes them, never dropped).
        seed: pattern seed.
    """

    fps: float  # always known here (the base class allows None)

    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        frames: int | None = 300,
        live: bool = False,
        seed: int = 0,
    ) -> None:
        if width < 1 or height < 1 or width > 16384 or height > 16384:
            raise ValueError(f"synthetic source: width and height must be in 1..16384, got {width}x{height}")
        if fps <= 0:
            raise ValueError(f"synthetic source: fps must be > 0, got {fps}")
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.frame_count = frames
        self.live = bool(live)
        self.seed = seed
        self.name = f"synthetic://{self.width}x{self.height}"
        self._frames: list[np.ndarray] = []
        self._index = 0
        self._t0: float | None = None

    def open(self) -> None:
        rng = np.random.default_rng(self.seed)
        h, w = self.height, self.width
        base = np.zeros((h, w, 3), np.uint8)
        base[:, :, 0] = np.linspace(40, 200, w, dtype=np.uint8)[None, :]
        base[:, :, 1] = np.linspace(30, 160, h, dtype=np.uint8)[:, None]
        base[:, :, 2] = 90
        colour = [int(c) for c in rng.integers(0, 255, 3)]
        for i in range(min(_CACHE, self.frame_count or _CACHE)):
            img = base.copy()
            x = int((i / _CACHE) * w)
            cv2.rectangle(img, (x, h // 3), (min(w - 1, x + w // 8), h // 3 + h // 4), colour, -1)
            cv2.circle(img, (w - x - 1, 2 * h // 3), max(2, h // 10), (255 - colour[0], 200, colour[2]), -1)
            img.flags.writeable = False
            self._frames.append(img)

    def read(self, stop: threading.Event) -> SourceItem | None:
        if stop.is_set() or (self.frame_count is not None and self._index >= self.frame_count):
            return None
        if self.live:
            if self._t0 is None:
                self._t0 = time.monotonic()
            if not wait_for_frame_time(self._t0, self._index, self.fps, stop):
                return None
        img = self._frames[self._index % len(self._frames)]
        pts = self._index / self.fps
        self._index += 1
        return SourceItem(img, pts)
