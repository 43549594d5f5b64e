"""A small HTTP control interface for a running graph: list, add and remove sources.

    GET    /sources           {"sources": {id: per-source metrics}}
    POST   /sources           body {"uri": "...", "id": "optional"} -> 201 {"id": ...}
    DELETE /sources/<id>      -> 200 {"id": ..., "drained": true|false}

Off unless asked for. The token rules are the WebSocket results server's: it binds 127.0.0.1
unless another host is given, takes the token as ``Authorization: Bearer`` or ``?token=``
(compared in constant time), and also reads it from ``$SEGSTREAM_CONTROL_TOKEN``; binding to
anything but a loopback address without a token is refused, since a source URI names files
and devices of this machine. Answers are JSON; errors are ``{"error": "..."}`` with 400 (bad
request), 401 (token), 404 (no such source), 409 (id in use, graph ended) or 422 (the source
cannot be opened).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from segstream.stream.errors import ConfigError, SegstreamError
from segstream.stream.sources.base import redact

log = logging.getLogger(__name__)

TOKEN_ENV = "SEGSTREAM_CONTROL_TOKEN"
MAX_BODY_BYTES = 64 * 1024


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ControlServer:
    """Serves the control interface of one graph from a thread.

    Args:
        graph: the running graph (``add_source``, ``remove_source``, ``metrics``).
        make_source: builds an unopened source from a URI (the application's own factory, so
            added sources get the same network options and policy as configured ones).
        host: interface to bind; 127.0.0.1 by default.
        port: TCP port (0: any free port, see ``port`` after ``open``).
        token: required token, or None (also read from $SEGSTREAM_CONTROL_TOKEN).
        remove_timeout_s: how long DELETE waits for the source's frames to reach the sinks.
    """

    def __init__(
        self,
        graph,
        make_source: Callable[[str], object],
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        remove_timeout_s: float = 5.0,
    ) -> None:
        self.graph = graph
        self.make_source = make_source
        self.host = host
        self.port = port
        self.token = token or os.environ.get(TOKEN_ENV) or None
        self.remove_timeout_s = remove_timeout_s
        if self.token is None and not is_loopback(host):
            raise ConfigError(
                f"control interface on {host}: a token is required off the loopback interface; set "
                f"control.token or ${TOKEN_ENV}, or bind 127.0.0.1"
            )
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.refused = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def open(self) -> None:
        handler = _handler_for(self)
        try:
            self._server = ThreadingHTTPServer((self.host, self.port), handler)
        except OSError as exc:
            raise ConfigError(f"control interface: cannot listen on {self.host}:{self.port} ({exc.strerror})") from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="control", daemon=True)
        self._thread.start()
        log.info("control interface on %s/sources", self.url)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def __enter__(self) -> ControlServer:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def authorised(self, path: str, headers) -> bool:
        if self.token is None:
            return True
        given = (parse_qs(urlsplit(path).query).get("token") or [""])[-1]
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[len("Bearer ") :]
        ok = hmac.compare_digest(given.encode(), self.token.encode())
        if not ok:
            self.refused += 1
        return ok

    # The answers, as (status, JSON document).
    def list_sources(self) -> tuple[int, dict]:
        return HTTPStatus.OK, {"sources": self.graph.metrics.sources_report()}

    def add(self, body: dict) -> tuple[int, dict]:
        uri = body.get("uri")
        source_id = body.get("id")
        if not isinstance(uri, str) or not uri.strip():
            return HTTPStatus.BAD_REQUEST, {"error": 'expected a JSON body {"uri": "...", "id": "optional"}'}
        if source_id is not None and (not isinstance(source_id, str) or not source_id):
            return HTTPStatus.BAD_REQUEST, {"error": "id must be a non-empty string"}
        try:
            source = self.make_source(uri)
        except SegstreamError as exc:
            return HTTPStatus.BAD_REQUEST, {"error": redact(str(exc))}
        try:
            sid = self.graph.add_source(source, source_id)
        except ValueError as exc:
            return HTTPStatus.CONFLICT, {"error": str(exc)}
        except SegstreamError as exc:
            status = HTTPStatus.CONFLICT if "no source can be added" in str(exc) else HTTPStatus.UNPROCESSABLE_ENTITY
            return status, {"error": redact(str(exc))}
        except Exception as exc:  # what a source's open raises (OpenCV, GStreamer)
            return HTTPStatus.UNPROCESSABLE_ENTITY, {"error": redact(f"{type(exc).__name__}: {exc}")}
        return HTTPStatus.CREATED, {"id": sid}

    def remove(self, source_id: str) -> tuple[int, dict]:
        try:
            drained = self.graph.remove_source(source_id, timeout=self.remove_timeout_s)
        except KeyError as exc:
            return HTTPStatus.NOT_FOUND, {"error": str(exc.args[0])}
        return HTTPStatus.OK, {"id": source_id, "drained": drained}


def _handler_for(server: ControlServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "segstream-control"

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
            log.debug("control: " + format, *args)

        def _answer(self, status: int, doc: dict) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> list[str] | None:
            if not server.authorised(self.path, self.headers):
                self._answer(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong token"})
                return None
            parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
            if not parts or parts[0] != "sources":
                self._answer(HTTPStatus.NOT_FOUND, {"error": "unknown path; use /sources"})
                return None
            return parts

        def do_GET(self) -> None:
            parts = self._route()
            if parts is None:
                return
            if len(parts) == 1:
                self._answer(*server.list_sources())
            elif len(parts) == 2:
                doc = server.graph.metrics.sources_report().get(parts[1])
                if doc is None:
                    self._answer(HTTPStatus.NOT_FOUND, {"error": f"no source '{parts[1]}'"})
                else:
                    self._answer(HTTPStatus.OK, doc)
            else:
                self._answer(HTTPStatus.NOT_FOUND, {"error": "unknown path; use /sources"})

        def do_POST(self) -> None:
            parts = self._route()
            if parts is None:
                return
            if len(parts) != 1:
                self._answer(HTTPStatus.NOT_FOUND, {"error": "POST /sources adds a source"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": f"expected a JSON body under {MAX_BODY_BYTES} bytes"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except (ValueError, UnicodeDecodeError):
                body = None
            if not isinstance(body, dict):
                self._answer(HTTPStatus.BAD_REQUEST, {"error": 'expected a JSON object {"uri": "..."}'})
                return
            self._answer(*server.add(body))

        def do_DELETE(self) -> None:
            parts = self._route()
            if parts is None:
                return
            if len(parts) != 2:
                self._answer(HTTPStatus.NOT_FOUND, {"error": "DELETE /sources/<id> removes a source"})
                return
            self._answer(*server.remove(parts[1]))

    return Handler
