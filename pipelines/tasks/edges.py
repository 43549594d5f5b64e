"""The OpenCV-only demo pipeline: Canny edges drawn over the frame. Needs no model."""

from __future__ import annotations

import cv2
import numpy as np

from segstream.stream.frame import Frame
from segstream.stream.graph import Stage


class GrayStage(Stage):
    """Grayscale + light blur into ``results["gray"]`` ((H, W) uint8)."""

    name = "preprocess"

    def process(self, frame: Frame) -> Frame:
        gray = cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2GRAY)
        frame.results["gray"] = cv2.GaussianBlur(gray, (5, 5), 0)
        return frame


class EdgeStage(Stage):
    """Canny edges of ``results["gray"]`` into ``results["edges"]`` ((H, W) uint8, 0/255)."""

    name = "edges"

    def __init__(self, low: int = 80, high: int = 160) -> None:
        self.low, self.high = low, high

    def process(self, frame: Frame) -> Frame:
        frame.results["edges"] = cv2.Canny(frame.results.pop("gray"), self.low, self.high)
        frame.results["edge_share"] = float(np.count_nonzero(frame.results["edges"])) / frame.results["edges"].size
        return frame


class EdgeOverlayStage(Stage):
    """Draws the edges in green on a copy of the frame (``overlay_bgr``)."""

    name = "overlay"

    def process(self, frame: Frame) -> Frame:
        edges = frame.results.pop("edges")
        out = frame.image_bgr.copy()
        out[edges > 0] = (0, 255, 0)
        frame.overlay_bgr = out
        return frame
