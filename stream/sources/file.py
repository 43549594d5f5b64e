"""Sources that read from disk: video files and image folders/globs. They never drop."""

from __future__ import annotations

import glob
import os
import threading

import cv2

from segstream.stream.errors import SourceError
from segstream.stream.sources.base import ImageConverter, Source, SourceItem

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
VIDEO_SUFFIXES = (
    ".mp4",
    ".avi",
    ".mkv",
    ".mov",
    ".m4v",
    ".webm",
    ".mpg",
    ".mpeg",
    ".ts",
    ".flv",
    ".wmv",
    ".h264",
    ".mjpeg",
    ".mjpg",
)


class VideoFileSource(Source):
    """A video file decoded with OpenCV/FFmpeg.

    A truncated or damaged file ends at the damage: frames before it are delivered, and
    ``stats()["ended_early"]`` says whether fewer frames came than the container announced.
    """

    live = False

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = path
        self._cap: cv2.VideoCapture | None = None
        self._convert = ImageConverter(path)
        self._read = 0

    def open(self) -> None:
        if not os.path.exists(self.path):
            raise SourceError(f"{self.path}: no such file; check the path")
        if os.path.isdir(self.path):
            raise SourceError(f"{self.path}: is a directory; give a video file, or the folder of images as the source")
        cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"{self.path}: not a video OpenCV/FFmpeg can decode; check the file or convert it (e.g. to mp4)"
            )
        fps = cap.get(cv2.CAP_PROP_FPS)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.fps = fps if fps and fps > 0 and fps < 1000 else None
        self.frame_count = count if count > 0 else None
        self._cap = cap

    def read(self, stop: threading.Event) -> SourceItem | None:
        if self._cap is None:
            raise SourceError(f"{self.path}: read before open")
        if stop.is_set():
            return None
        ok, img = self._cap.read()
        if not ok or img is None:
            if self._read == 0:
                raise SourceError(f"{self.path}: no frame could be decoded; the file is damaged or not a video")
            return None
        pts = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1e3
        self._read += 1
        return SourceItem(self._convert(img, f" frame {self._read - 1}"), pts)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def stats(self) -> dict:
        ended_early = self.frame_count is not None and self._read < self.frame_count
        return {
            "frames_read": self._read,
            "announced_frames": self.frame_count,
            "ended_early": ended_early,
            "converted": self._convert.converted,
        }


class ImageFolderSource(Source):
    """The images of a folder (sorted by name) or of a glob pattern.

    Images may differ in size, be grayscale, BGRA or 16-bit: they are converted to BGR uint8.
    """

    live = False

    def __init__(self, pattern: str, fps: float | None = None) -> None:
        self.pattern = pattern
        self.name = pattern
        self.fps = fps
        self._files: list[str] = []
        self._index = 0
        self._convert = ImageConverter(pattern)

    def open(self) -> None:
        if os.path.isdir(self.pattern):
            files = [os.path.join(self.pattern, f) for f in os.listdir(self.pattern)]
            files = [f for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
            if not files:
                raise SourceError(f"{self.pattern}: the folder has no images ({', '.join(IMAGE_SUFFIXES[:5])}, ...)")
        else:
            files = [f for f in glob.glob(self.pattern) if f.lower().endswith(IMAGE_SUFFIXES)]
            if not files:
                raise SourceError(f"{self.pattern}: no image matches this pattern; check the path")
        self._files = sorted(files)
        self.frame_count = len(self._files)

    def read(self, stop: threading.Event) -> SourceItem | None:
        while self._index < len(self._files) and not stop.is_set():
            path = self._files[self._index]
            self._index += 1
            img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if img is None:
                raise SourceError(f"{path}: not an image OpenCV can read; remove it from the folder or fix it")
            pts = (self._index - 1) / self.fps if self.fps else None
            return SourceItem(self._convert(img, f" ({os.path.basename(path)})"), pts)
        return None

    def stats(self) -> dict:
        return {"images": len(self._files), "converted": self._convert.converted}
