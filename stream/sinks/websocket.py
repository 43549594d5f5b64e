"""Results for AR clients over a local WebSocket server.

``ws://127.0.0.1:8765?token=SECRET&max_clients=8`` serves one JSON message per frame (the
JSON Lines record). It binds 127.0.0.1 unless another host is given, checks an optional token
(``?token=`` on the client's URL or ``Authorization: Bearer``), limits clients and message
size, and never lets a slow client block the pipeline: each client has a latest-only slot and
the messages it missed are counted.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from segstream.stream.errors import ConfigError, SinkError
from segstream.stream.frame import Frame
from segstream.stream.sinks.base import Sink
from segstream.stream.sinks.files import frame_record

if TYPE_CHECKING:  # imported when the sink opens: websockets is only needed for ws:// outputs
    from websockets.sync.server import Server

log = logging.getLogger(__name__)

TOKEN_ENV = "SEGSTREAM_WS_TOKEN"


class _Client:
    def __init__(self, conn) -> None:
        self.conn = conn
        self.cond = threading.Condition()
        self.pending: str | None = None
        self.skipped = 0
        self.closed = False

    def offer(self, message: str) -> None:
        with self.cond:
            if self.pending is not None:
                self.skipped += 1
            self.pending = message
            self.cond.notify()

    def take(self, timeout: float) -> str | None:
        with self.cond:
            if self.pending is None and not self.closed:
                self.cond.wait(timeout)
            msg, self.pending = self.pending, None
            return msg

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()


class WebSocketSink(Sink):
    """Publishes each frame's results to WebSocket clients.

    Args:
        host: interface to bind (127.0.0.1 by default; 0.0.0.0 exposes it to the network).
        port: TCP port (0: any free port, see ``port`` after ``open``).
        token: required token, or None for none (also read from $SEGSTREAM_WS_TOKEN).
        max_clients: connections beyond this are refused with 503.
        max_message_bytes: larger messages are not sent (counted in ``too_large``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8765,
        token: str | None = None,
        max_clients: int = 8,
        max_message_bytes: int = 8 << 20,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.max_clients = max_clients
        self.max_message_bytes = max_message_bytes
        self.name = f"ws://{host}:{port}"
        self._clients: list[_Client] = []
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.skipped_total = 0
        self.too_large = 0
        self.refused = 0

    @classmethod
    def from_uri(cls, uri: str) -> WebSocketSink:
        parts = urlsplit(uri)
        allowed = {"token", "max_clients", "max_message_bytes"}
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(q) - allowed
        if unknown:
            raise ConfigError(
                f"{parts.scheme}://{parts.netloc}: unknown option(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        try:
            return cls(
                host=parts.hostname or "127.0.0.1",
                port=parts.port if parts.port is not None else 8765,
                token=q.get("token"),
                max_clients=int(q.get("max_clients", 8)),
                max_message_bytes=int(q.get("max_message_bytes", 8 << 20)),
            )
        except ValueError as exc:
            raise ConfigError(f"ws:// output: {exc}") from None

    def _check(self, connection, request):
        if self.token is not None:
            given = (parse_qs(urlsplit(request.path).query).get("token") or [""])[-1]
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                given = auth[len("Bearer ") :]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                self.refused += 1
                return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
        with self._lock:
            if len(self._clients) >= self.max_clients:
                self.refused += 1
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many clients\n")
        return None

    def _handle(self, conn) -> None:
        client = _Client(conn)
        with self._lock:
            self._clients.append(client)
        try:
            while not client.closed:
                msg = client.take(0.2)
                if msg is not None:
                    conn.send(msg)
                    continue
                try:
                    conn.recv(timeout=0)  # notices a client that has gone; its messages are ignored
                except TimeoutError:
                    pass
        except Exception as exc:  # the client went away mid-send: only this client ends
            log.info("websocket client left: %s", type(exc).__name__)
        finally:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)
                self.skipped_total += client.skipped

    def open(self) -> None:
        try:
            from websockets.sync.server import serve
        except ImportError:
            raise SinkError("ws:// outputs need the 'websockets' package: pip install websockets") from None
        try:
            self._server = serve(
                self._handle, self.host, self.port, process_request=self._check, max_size=64 * 1024, compression=None
            )
        except OSError as exc:
            raise SinkError(f"{self.name}: cannot listen ({exc.strerror}); choose another port") from None
        self.port = self._server.socket.getsockname()[1]
        self.name = f"ws://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="ws-server", daemon=True)
        self._thread.start()

    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def write(self, frame: Frame) -> None:
        if self._server is None:
            self.open()
        with self._lock:
            clients = list(self._clients)
        if not clients:
            return
        message = json.dumps(frame_record(frame), separators=(",", ":"))
        if len(message) > self.max_message_bytes:
            self.too_large += 1
            return
        for c in clients:
            c.offer(message)
        self.sent += 1

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            c.close()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._thread is not None:
            self._thread.join(2.0)

    def stats(self) -> dict:
        return {"sent": self.sent, "skipped": self.skipped_total, "too_large": self.too_large, "refused": self.refused}
