"""Sinks that write files: video, image folder, JSON Lines."""

from __future__ import annotations

import json
import logging
import os
from typing import TextIO

import cv2
import numpy as np

from segstream.stream.errors import SinkError
from segstream.stream.frame import Frame
from segstream.stream.sinks.base import Sink

log = logging.getLogger(__name__)

#: container suffix -> FourCC OpenCV can write here (its FFmpeg has no H.264 encoder).
FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def writable_parent(path: str, what: str) -> None:
    """Creates the folder ``path`` goes into; SinkError naming ``what`` if it cannot or may not be written."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise SinkError(
            f"{path}: cannot create the folder for the {what} ({exc.strerror}); choose another path"
        ) from None
    if not os.access(parent, os.W_OK):
        raise SinkError(f"{path}: the folder {parent} is not writable; choose another path or fix its permissions")


def free_bytes(path: str) -> int:
    st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    return st.f_bavail * st.f_frsize


class VideoFileSink(Sink):
    """A video file written with OpenCV (mp4v for .mp4/.mov, MJPG for .avi/.mkv).

    The writer opens on the first frame (its size fixes the video's size; later frames of
    another size are resized and counted). ``close`` releases it, which finalises the file.
    OpenCV does not report write errors, so the sink watches the free space itself and stops
    with a SinkError while there is still room to finalise the file (``reserve_frames``
    frames' worth plus 256 KiB), so a full disk leaves a playable video of the frames before.

    Args:
        path: output file.
        fps: frame rate written into the container.
        fourcc: override the codec chosen from the suffix.
    """

    def __init__(self, path: str, fps: float | None = None, fourcc: str | None = None, reserve_frames: int = 8) -> None:
        self.path = path
        self.reserve_frames = reserve_frames
        self.name = path
        self.fps = float(fps) if fps else 30.0
        suffix = os.path.splitext(path)[1].lower()
        chosen = fourcc or FOURCC_BY_SUFFIX.get(suffix)
        if chosen is None:
            raise SinkError(f"{path}: unknown video container {suffix!r}; use one of {sorted(FOURCC_BY_SUFFIX)}")
        self.fourcc: str = chosen
        self._writer: cv2.VideoWriter | None = None
        self._size_wh: tuple[int, int] | None = None
        self.frames_written = 0
        self.resized = 0

    def open(self) -> None:
        writable_parent(self.path, "video")

    def write(self, frame: Frame) -> None:
        img = frame.display_bgr()
        h, w = img.shape[:2]
        if self._writer is None:
            self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter.fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                raise SinkError(
                    f"{self.path}: OpenCV cannot write {self.fourcc} video here; try .avi (MJPG) or .mp4 (mp4v)"
                )
            self._size_wh = (w, h)
        if (w, h) != self._size_wh:
            img = cv2.resize(img, self._size_wh, interpolation=cv2.INTER_AREA)
            self.resized += 1
        if self.frames_written % 4 == 0:
            self._check_space(frame.seq)
        self._writer.write(np.ascontiguousarray(img))
        self.frames_written += 1

    def _check_space(self, seq: int) -> None:
        assert self._size_wh is not None  # set by the first write, before any check
        written = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        per_frame = written / self.frames_written if self.frames_written else self._size_wh[0] * self._size_wh[1] * 3
        need = per_frame * self.reserve_frames + (256 << 10)
        free = free_bytes(self.path)
        if free < need:
            raise SinkError(
                f"{self.path}: disk nearly full ({free >> 10} KiB free) at frame {seq}; "
                f"stopped after {self.frames_written} frames so the file stays playable"
            )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            if self.resized:
                assert self._size_wh is not None  # resizing needs a first frame's size
                log.warning(
                    "%s: %d frames of another size were resized to %dx%d", self.path, self.resized, *self._size_wh
                )
            if not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
                raise SinkError(
                    f"{self.path}: the video file is empty after writing {self.frames_written} frames; is the disk full?"
                )


class ImageFolderSink(Sink):
    """One image per frame, named by source sequence number (``%06d.jpg``)."""

    def __init__(self, folder: str, ext: str = ".jpg") -> None:
        self.folder = folder
        self.name = folder
        self.ext = ext

    def open(self) -> None:
        writable_parent(os.path.join(self.folder, "x"), "images")

    def write(self, frame: Frame) -> None:
        path = os.path.join(self.folder, f"{frame.seq:06d}{self.ext}")
        if not cv2.imwrite(path, frame.display_bgr()):
            raise SinkError(f"{path}: could not write the image; is the disk full or the folder removed?")


def to_jsonable(value):
    """JSON form of a result: objects with ``to_json_dict()``, plain data, or None if neither."""
    fn = getattr(value, "to_json_dict", None)
    if callable(fn):
        return fn()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        items = [to_jsonable(v) for v in value]
        return items
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return None


def frame_record(frame: Frame) -> dict:
    """The JSON Lines record of one frame (also what the results server sends)."""
    results = {}
    for name, value in frame.results.items():
        if name.startswith("_"):  # intermediate data between stages
            continue
        j = to_jsonable(value)
        if j is not None:
            results[name] = j
    record = {
        "source": frame.source_id,
        "frame": frame.seq,
        "pts_s": frame.pts_s,
        "capture_ns": frame.capture_ns,
        "age_ms": round(frame.age_ms(), 3),
        "size_hw": list(frame.size_hw),
        "timings_ms": {k: round(v, 3) for k, v in frame.timings_ms.items()},
        "results": results,
    }
    if frame.metadata:
        record["metadata"] = to_jsonable(frame.metadata)
    return record


class JsonlSink(Sink):
    """One JSON object per frame and line, flushed per line so a crash keeps what was written."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = path
        self._fh: TextIO | None = None

    def open(self) -> None:
        writable_parent(self.path, "JSON Lines file")
        try:
            self._fh = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            raise SinkError(f"{self.path}: cannot open for writing ({exc.strerror})") from None

    def write(self, frame: Frame) -> None:
        if self._fh is None:
            self.open()
        assert self._fh is not None  # open() sets it or raises
        try:
            self._fh.write(json.dumps(frame_record(frame), separators=(",", ":")) + "\n")
            self._fh.flush()
        except OSError as exc:
            raise SinkError(f"{self.path}: write failed on frame {frame.seq} ({exc.strerror})") from None

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError as exc:
                raise SinkError(f"{self.path}: could not be finalised ({exc.strerror})") from None
            finally:
                self._fh = None
