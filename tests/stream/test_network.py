"""Network sources against a real local MJPEG-over-HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import time

import pytest

from segstream.stream.errors import SourceError
from segstream.stream.graph import FunctionStage, Graph, GraphSettings
from segstream.stream.sinks import CallbackSink
from segstream.stream.sources import open_source
from tests.mjpeg_server import MjpegServer

FAST = {
    "open_timeout_s": 2.0,
    "read_timeout_s": 1.0,
    "backoff_initial_s": 0.1,
    "backoff_max_s": 0.4,
    "give_up_after_s": 10.0,
}


def test_stream_reconnects_after_the_server_restarts_and_counts_the_gap():
    server = MjpegServer(fps=40)
    server.start()
    seen = []
    try:
        src = open_source(server.url, network_options=FAST)
        g = Graph(
            src,
            [FunctionStage("noop", lambda f: f)],
            [CallbackSink(lambda f: seen.append(time.monotonic()))],
            GraphSettings(max_in_flight=2),
        )
        g.start()
        time.sleep(1.0)
        before = len(seen)
        server.stop()
        time.sleep(1.2)
        during = len(seen)
        server.start()
        deadline = time.monotonic() + 10
        while len(seen) < during + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        g.stop()
        assert g.wait(timeout=5)
        g.close()
    finally:
        server.stop()
    report = g.metrics.report()
    assert before > 10
    assert len(seen) >= during + 20, "no frames after the server came back"
    stats = report["source"]
    assert stats["reconnects"] >= 1
    assert stats["gap_s"] > 0.8
    assert g.error is None
    text = json.dumps(report)
    assert "hunter2" not in text and "viewer" not in text


def test_unreachable_host_fails_fast_with_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = open_source(f"http://user:pw@127.0.0.1:{port}/video.mjpg", network_options=FAST)
    t0 = time.monotonic()
    with pytest.raises(SourceError) as exc:
        src.open()
    assert time.monotonic() - t0 < 5
    assert "cannot connect" in str(exc.value) and "pw" not in str(exc.value)


def test_silent_server_times_out_instead_of_hanging():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepts TCP connections, never answers HTTP
    port = listener.getsockname()[1]
    try:
        src = open_source(f"http://127.0.0.1:{port}/video.mjpg", network_options=FAST)
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="cannot connect within 2 s"):
            src.open()
        assert time.monotonic() - t0 < 8
    finally:
        listener.close()


def test_stream_that_never_comes_back_fails_the_run_after_give_up():
    server = MjpegServer(fps=30)
    server.start()
    opts = dict(FAST, give_up_after_s=1.0)
    src = open_source(server.url, network_options=opts)
    g = Graph(src, [FunctionStage("noop", lambda f: f)], [CallbackSink(lambda f: None)])
    g.start()
    time.sleep(0.5)
    server.stop()
    assert g.wait(timeout=10)
    g.close()
    assert isinstance(g.error, SourceError)
    assert "no frames for 1 s" in str(g.error) and "hunter2" not in str(g.error)
