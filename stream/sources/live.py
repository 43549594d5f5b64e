"""Live sources: V4L2 cameras, Jetson CSI cameras, RTSP and HTTP streams.

A grabber thread reads the device continuously and keeps only the newest frame, so a slow
pipeline never sees stale frames and never makes a driver buffer fill up; frames the pipeline
did not take in time are counted as ``overwritten``. Network streams reconnect with
exponential backoff and count the gap; credentials never leave ``redact``.
"""

from __future__ import annotations

import logging
import threading
import time

import cv2

from segstream.stream.errors import SourceError
from segstream.stream.sources.base import ImageConverter, Source, SourceItem, redact, redact_url

log = logging.getLogger(__name__)


class _LiveCapture(Source):
    """Common grabber-thread machinery; subclasses say how to open the capture."""

    live = True

    def __init__(
        self,
        name: str,
        reconnect: bool,
        open_timeout_s: float,
        read_timeout_s: float,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 8.0,
        give_up_after_s: float = 60.0,
    ) -> None:
        self.name = name
        self.reconnect = reconnect
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.give_up_after_s = give_up_after_s
        self._convert = ImageConverter(name)
        self._cond = threading.Condition()
        self._latest: SourceItem | None = None
        self._latest_no = 0
        self._taken_no = 0
        self._error: SourceError | None = None
        self._ended = False
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._cap: cv2.VideoCapture | None = None
        self.state = "NOT_STARTED"
        self.reconnects = 0
        self.gap_s = 0.0
        self.overwritten = 0
        self.frames_grabbed = 0

    # Subclasses implement this.
    def _open_capture(self):
        raise NotImplementedError

    def open(self) -> None:
        self.state = "CONNECTING"
        self._cap = cap = self._open_capture()  # the first open fails loudly: nothing to reconnect to
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        self.state = "RUNNING"
        self._thread = threading.Thread(target=self._grab_loop, name=f"grab:{self.name}", daemon=True)
        self._thread.start()

    def _grab_loop(self) -> None:
        backoff = self.backoff_initial_s
        lost_at: float | None = None
        while not self._closing.is_set():
            ok, img = (False, None)
            if self._cap is not None:
                try:
                    ok, img = self._cap.read()
                except cv2.error as exc:
                    log.warning("%s: read failed: %s", self.name, redact(str(exc)))
                    ok = False
            if ok and img is not None:
                if lost_at is not None:
                    self.gap_s += time.monotonic() - lost_at
                    log.warning("%s: reconnected after %.1f s", self.name, time.monotonic() - lost_at)
                    lost_at = None
                    backoff = self.backoff_initial_s
                    self.state = "RUNNING"
                try:
                    frame = self._convert(img)
                except SourceError as exc:
                    self._finish(error=exc)
                    return
                pts = None
                if self._cap is not None:
                    pos = self._cap.get(cv2.CAP_PROP_POS_MSEC)
                    pts = pos / 1e3 if pos and pos > 0 else None
                with self._cond:
                    if self._latest is not None and self._latest_no > self._taken_no:
                        self.overwritten += 1
                    self._latest = SourceItem(frame, pts)
                    self._latest_no += 1
                    self.frames_grabbed += 1
                    self._cond.notify_all()
                continue
            # The stream failed or ended.
            if not self.reconnect:
                self._finish()
                return
            if lost_at is None:
                lost_at = time.monotonic()
                log.warning("%s: stream lost, reconnecting", self.name)
            if time.monotonic() - lost_at > self.give_up_after_s:
                self.gap_s += time.monotonic() - lost_at
                self._finish(
                    error=SourceError(
                        f"{self.name}: no frames for {self.give_up_after_s:g} s after {self.reconnects} reconnect attempts; "
                        "check the camera or network"
                    )
                )
                return
            self.state = "RESTARTING"
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            if self._closing.wait(backoff):
                break
            backoff = min(backoff * 2, self.backoff_max_s)
            self.reconnects += 1
            try:
                self._cap = self._open_capture()
            except SourceError as exc:
                log.info("%s: reconnect failed: %s", self.name, exc)
                self._cap = None
        self._finish()

    def _finish(self, error: SourceError | None = None) -> None:
        with self._cond:
            self._error = error
            self._ended = True
            self.state = "ERROR" if error else "ENDED"
            self._cond.notify_all()

    def read(self, stop: threading.Event) -> SourceItem | None:
        with self._cond:
            while self._latest_no <= self._taken_no:
                if self._ended:
                    if self._error is not None:
                        raise self._error
                    return None
                if stop.is_set():
                    return None
                self._cond.wait(0.05)
            self._taken_no = self._latest_no
            return self._latest

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            # The grabber may sit in a read for up to read_timeout_s; it is a daemon and
            # releases the capture itself when it returns.
            self._thread.join(timeout=0.5)
            if self._thread.is_alive():
                return
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def dropped(self) -> int:
        return self.overwritten

    def stats(self) -> dict:
        return {
            "state": self.state,
            "frames_grabbed": self.frames_grabbed,
            "overwritten": self.overwritten,
            "reconnects": self.reconnects,
            "gap_s": round(self.gap_s, 3),
            "converted": self._convert.converted,
        }


class CameraSource(_LiveCapture):
    """A V4L2 camera by index or ``/dev/videoN``."""

    def __init__(
        self,
        device: int | str,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        open_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(f"camera:{device}", reconnect=False, open_timeout_s=open_timeout_s, read_timeout_s=5.0)
        self.device = device
        self.width, self.height, self.want_fps = width, height, fps

    def _open_capture(self):
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"camera {self.device!r} cannot be opened; list cameras with 'v4l2-ctl --list-devices' "
                "and check permissions (video group)"
            )
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.want_fps:
            cap.set(cv2.CAP_PROP_FPS, self.want_fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap


class NetworkSource(_LiveCapture):
    """An RTSP, HTTP(S) MJPEG or HLS stream through OpenCV/FFmpeg, with reconnect.

    Args:
        url: the stream URL (credentials allowed; they are never printed).
        open_timeout_s / read_timeout_s: FFmpeg timeouts so no call hangs.
        give_up_after_s: fail the run after this long without frames.
    """

    def __init__(
        self,
        url: str,
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 8.0,
        give_up_after_s: float = 60.0,
        reconnect: bool = True,
    ) -> None:
        super().__init__(
            redact_url(url),
            reconnect=reconnect,
            open_timeout_s=open_timeout_s,
            read_timeout_s=read_timeout_s,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            give_up_after_s=give_up_after_s,
        )
        self._url = url

    def _open_capture(self):
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout_s * 1000),
        ]
        cap = cv2.VideoCapture(self._url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"{self.name}: cannot connect within {self.open_timeout_s:g} s; "
                "check the address, port, credentials and that the stream is up"
            )
        return cap


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """The GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc), ending in appsink.

    The camera's NV12 frames are converted by the VIC (nvvidconv) to BGRx, then to BGR by
    videoconvert; the appsink keeps one buffer and drops the rest, so latency never builds up.
    """
    return (
        f"nvarguscamerasrc sensor-id={int(sensor_id)} ! "
        f"video/x-raw(memory:NVMM),width={int(width)},height={int(height)},framerate={int(fps)}/1,format=NV12 ! "
        f"nvvidconv flip-method={int(flip)} ! video/x-raw,format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink name=segstream_sink max-buffers=1 drop=true sync=false"
    )
