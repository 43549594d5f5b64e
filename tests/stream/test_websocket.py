"""The results WebSocket server with real clients on 127.0.0.1."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from segstream.stream.errors import ConfigError
from segstream.stream.frame import Frame
from segstream.stream.sinks import open_sink

ws_client = pytest.importorskip("websockets.sync.client")
from websockets.exceptions import InvalidStatus  # noqa: E402


def _frame(seq):
    f = Frame("src", seq, None, 0, np.zeros((8, 8, 3), np.uint8))
    f.results["n"] = seq
    return f


def _sink(uri="ws://127.0.0.1:0"):
    s = open_sink(uri)
    s.open()
    return s


def _wait_clients(sink, n):
    deadline = time.monotonic() + 5
    while sink.clients() != n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.clients() == n


def test_client_receives_well_formed_messages():
    sink = _sink()
    try:
        assert sink.host == "127.0.0.1"
        with ws_client.connect(f"ws://127.0.0.1:{sink.port}/") as c:
            _wait_clients(sink, 1)
            got = []
            for i in range(5):
                sink.write(_frame(i))
                got.append(json.loads(c.recv(timeout=5)))
        assert [m["frame"] for m in got] == list(range(5))
        assert all({"source", "frame", "capture_ns", "results"} <= set(m) for m in got)
        assert got[3]["results"] == {"n": 3}
    finally:
        sink.close()


def test_token_is_required_when_set():
    sink = _sink("ws://127.0.0.1:0?token=s3cret")
    try:
        with pytest.raises(InvalidStatus) as exc:
            ws_client.connect(f"ws://127.0.0.1:{sink.port}/")
        assert exc.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            ws_client.connect(f"ws://127.0.0.1:{sink.port}/?token=wrong")
        with ws_client.connect(f"ws://127.0.0.1:{sink.port}/?token=s3cret") as c:
            _wait_clients(sink, 1)
            sink.write(_frame(1))
            assert json.loads(c.recv(timeout=5))["frame"] == 1
        with ws_client.connect(
            f"ws://127.0.0.1:{sink.port}/", additional_headers={"Authorization": "Bearer s3cret"}
        ) as c:
            _wait_clients(sink, 1)
        assert "s3cret" not in sink.name
    finally:
        sink.close()


def test_client_limit():
    sink = _sink("ws://127.0.0.1:0?max_clients=1")
    try:
        with ws_client.connect(f"ws://127.0.0.1:{sink.port}/"):
            _wait_clients(sink, 1)
            with pytest.raises(InvalidStatus) as exc:
                ws_client.connect(f"ws://127.0.0.1:{sink.port}/")
            assert exc.value.response.status_code == 503
    finally:
        sink.close()


def test_slow_client_never_blocks_the_writer():
    sink = _sink()
    try:
        c = ws_client.connect(f"ws://127.0.0.1:{sink.port}/")
        _wait_clients(sink, 1)
        big = _frame(0)
        big.results["blob"] = "x" * 200_000
        t0 = time.monotonic()
        for i in range(300):  # ~60 MB offered to a client that reads nothing
            big.seq = i
            sink.write(big)
        assert time.monotonic() - t0 < 5
        first = json.loads(c.recv(timeout=5))
        last = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                last = json.loads(c.recv(timeout=0.5))
            except TimeoutError:
                break
        c.close()
        assert first["frame"] >= 0 and last is not None and last["frame"] == 299
        sink.close()
        assert sink.stats()["skipped"] > 0
    finally:
        sink.close()


def test_too_large_messages_are_counted_not_sent():
    sink = _sink("ws://127.0.0.1:0?max_message_bytes=100")
    try:
        with ws_client.connect(f"ws://127.0.0.1:{sink.port}/"):
            _wait_clients(sink, 1)
            sink.write(_frame(0))
        assert sink.stats()["too_large"] == 1
    finally:
        sink.close()


def test_bad_options():
    with pytest.raises(ConfigError, match="unknown option"):
        open_sink("ws://127.0.0.1:0?tokn=x")


def test_example_client_prints_frames():
    import subprocess
    import sys

    from tests.conftest import ROOT

    sink = _sink("ws://127.0.0.1:0?token=abc")
    try:
        proc = subprocess.Popen(
            [sys.executable, "examples/ws_client.py", f"ws://127.0.0.1:{sink.port}", "--token", "abc", "--count", "3"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_clients(sink, 1)
        i = 0
        while proc.poll() is None and i < 200:  # a frame every 20 ms until it has read 3
            sink.write(_frame(i))
            i += 1
            time.sleep(0.02)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        frames = [int(line.split(":")[0].split()[1]) for line in out.splitlines()]
        assert len(frames) == 3 and frames == sorted(frames)
    finally:
        sink.close()
