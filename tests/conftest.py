"""Shared test helpers: generated videos and frames, a GStreamer availability marker."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

try:  # torch before GStreamer in one process: the other order crashes torch.onnx.export
    import torch  # noqa: F401
except ImportError:
    pass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pattern_frame(i: int, size_hw=(120, 160)) -> np.ndarray:
    """A BGR frame whose index can be read back after lossy coding: 8 bits as 8 wide bars."""
    h, w = size_hw
    img = np.full((h, w, 3), 40, np.uint8)
    bar = w // 8
    for b in range(8):
        if (i >> b) & 1:
            img[: h // 2, b * bar:(b + 1) * bar] = 230
    cv2.putText(img, str(i), (4, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1)
    return img


def read_pattern_index(img: np.ndarray) -> int:
    h, w = img.shape[:2]
    bar = w // 8
    value = 0
    for b in range(8):
        if img[: h // 2, b * bar + 2:(b + 1) * bar - 2].mean() > 128:
            value |= 1 << b
    return value


def write_video(path: str, n: int, size_hw=(120, 160), fps: float = 25.0) -> str:
    fourcc = "MJPG" if path.endswith(".avi") else "mp4v"
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, (size_hw[1], size_hw[0]))
    assert writer.isOpened(), f"cannot write {path}"
    for i in range(n):
        writer.write(pattern_frame(i, size_hw))
    writer.release()
    return path


def count_video_frames(path: str) -> int:
    """Frames decodable from a file (decodes every frame, so a damaged tail counts short)."""
    cap = cv2.VideoCapture(path)
    n = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n


def segstream_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "segstream", *args]


def _gst_ok() -> bool:
    # Probed in a child process: initialising GStreamer in the test process before torch is
    # imported makes a later torch.onnx.export segfault, so collection must not do it.
    code = "from stream.gst import gst_available; raise SystemExit(0 if gst_available() else 1)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=60).returncode == 0


needs_gstreamer = pytest.mark.skipif(not _gst_ok(), reason="PyGObject/GStreamer not installed (see README: make installs it when the Debian packages exist)")


@pytest.fixture
def video_file(tmp_path):
    return write_video(str(tmp_path / "clip.avi"), 40)
