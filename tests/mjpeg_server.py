"""A real MJPEG-over-HTTP server on 127.0.0.1 for reconnect tests (multipart/x-mixed-replace)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

from tests.conftest import pattern_frame

BOUNDARY = "segstreamframe"


class MjpegServer:
    """Serves numbered JPEG frames at ``fps`` on ``/video.mjpg``; ``stop()``/``start()`` on the same port.

    The credentials in the URL are accepted and ignored (the tests check they never leak).
    """

    def __init__(self, fps: float = 30.0, size_hw=(96, 128)) -> None:
        self.fps = fps
        self.size_hw = size_hw
        self.port = self._free_port()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self.frames_sent = 0

    @staticmethod
    def _free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://viewer:hunter2@127.0.0.1:{self.port}/video.mjpg"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                i = 0
                try:
                    while owner._running.is_set():
                        ok, jpg = cv2.imencode(".jpg", pattern_frame(i % 256, owner.size_hw))
                        data = jpg.tobytes()
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                            + data
                            + b"\r\n"
                        )
                        owner.frames_sent += 1
                        i += 1
                        time.sleep(1.0 / owner.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._running.set()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running.clear()  # streaming handlers return and close their connections
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
