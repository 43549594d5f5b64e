"""GStreamer sources and sinks, run for real (CI installs GStreamer and PyGObject)."""

from __future__ import annotations

import socket
import time

import pytest

from segstream.stream.errors import SinkError, SourceError
from segstream.stream.graph import FunctionStage, Graph
from segstream.stream.sinks import CallbackSink, open_sink
from segstream.stream.sources import open_source
from tests.conftest import count_video_frames, read_pattern_index, write_video

pytestmark = pytest.mark.needs_gstreamer


def test_gst_test_source_through_the_graph():
    frames = []
    src = open_source("gst:videotestsrc num-buffers=25 ! video/x-raw,width=80,height=60 ! videoconvert ! appsink")
    g = Graph(src, [FunctionStage("noop", lambda f: f)], [CallbackSink(frames.append)])
    report = g.run(timeout=30)
    assert report.error is None
    # videotestsrc is not a file: the source counts as live and may drop, but it ends with EOS.
    assert 0 < len(frames) <= 25
    assert frames[0].image_bgr.shape == (60, 80, 3)


def test_gst_file_pipeline_is_not_live_and_keeps_every_frame(tmp_path):
    path = write_video(str(tmp_path / "v.avi"), 15)
    frames = []
    src = open_source(f"gst:filesrc location={path} ! decodebin ! videoconvert ! appsink")
    assert not src.live
    g = Graph(src, [], [CallbackSink(frames.append)])
    report = g.run(timeout=30)
    assert report.error is None
    assert [read_pattern_index(f.image_bgr) for f in frames] == list(range(15))


def test_gst_sink_writes_a_playable_file(tmp_path):
    out = tmp_path / "gst.avi"
    sink = open_sink(f"gst:appsrc ! videoconvert ! jpegenc ! avimux ! filesink location={out}", fps=20)
    g = Graph(open_source("synthetic://?width=96&height=64&frames=30"), [], [sink])
    report = g.run(timeout=30)
    assert report.error is None
    assert count_video_frames(str(out)) == 30


def test_rtp_udp_out_and_back_in_on_loopback():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    received = []
    rx = open_source(
        f'gst:udpsrc address=127.0.0.1 port={port} caps="application/x-rtp,media=video,encoding-name=JPEG,payload=26,clock-rate=90000" '
        "! rtpjpegdepay ! jpegdec ! videoconvert ! appsink"
    )
    rx_graph = Graph(rx, [], [CallbackSink(received.append)])
    rx_graph.start()
    time.sleep(0.3)
    tx = open_sink(
        f"gst:appsrc ! videoconvert ! video/x-raw,format=I420 ! jpegenc ! rtpjpegpay ! udpsink host=127.0.0.1 port={port}",
        fps=30,
    )
    tx_graph = Graph(open_source("synthetic://?width=64&height=48&fps=30&frames=40&live=1"), [], [tx])
    assert tx_graph.run(timeout=30).error is None
    deadline = time.monotonic() + 5
    while len(received) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    rx_graph.stop()
    rx_graph.wait(timeout=5)
    rx_graph.close()
    assert len(received) >= 20
    assert received[0].image_bgr.shape == (48, 64, 3)


@pytest.mark.parametrize(
    "uri, err, message",
    [
        ("gst:videotestsrc ! nosuchelement ! appsink", SourceError, "cannot parse"),
        ("gst:videotestsrc ! fakesink", SourceError, "must end in an appsink"),
    ],
)
def test_bad_gst_sources(uri, err, message):
    with pytest.raises(err, match=message):
        open_source(uri).open()


def test_bad_gst_sink():
    with pytest.raises(SinkError, match="must start with appsrc"):
        open_sink("gst:videotestsrc ! fakesink").open()
