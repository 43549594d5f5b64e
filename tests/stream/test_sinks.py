"""Sinks by URI: video, image folder, JSON Lines, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from segstream.stream.errors import ConfigError, SinkError
from segstream.stream.frame import Frame
from segstream.stream.sinks import ImageFolderSink, JsonlSink, NullSink, VideoFileSink, open_sink
from tests.conftest import count_video_frames


def _frame(seq, h=48, w=64, value=0):
    return Frame("src", seq, seq / 10, 0, np.full((h, w, 3), value, np.uint8))


@pytest.mark.parametrize(
    "uri, cls",
    [
        ("a.mp4", VideoFileSink),
        ("a.avi", VideoFileSink),
        ("file:///tmp/a.mkv", VideoFileSink),
        ("r.jsonl", JsonlSink),
        ("frames/", ImageFolderSink),
        ("framesdir", ImageFolderSink),
        ("null://", NullSink),
    ],
)
def test_factory(uri, cls):
    assert isinstance(open_sink(uri), cls)


@pytest.mark.parametrize(
    "uri, message",
    [
        ("a.xyz", "unknown output type '.xyz'"),
        ("ftp://x/y", "unknown output scheme"),
        ("", "empty output"),
    ],
)
def test_factory_errors(uri, message):
    with pytest.raises(ConfigError, match=message):
        open_sink(uri)


def test_video_sink_resizes_frames_of_another_size(tmp_path):
    path = str(tmp_path / "v.avi")
    sink = open_sink(path, fps=10)
    sink.open()
    for i in range(6):
        sink.write(_frame(i, *((48, 64) if i % 2 == 0 else (100, 30))))
    sink.close()
    assert sink.resized == 3
    assert count_video_frames(path) == 6


def test_image_folder_and_jsonl(tmp_path):
    folder, jsonl = str(tmp_path / "imgs") + "/", str(tmp_path / "r.jsonl")
    sinks = [open_sink(folder), open_sink(jsonl)]
    for s in sinks:
        s.open()
    f = _frame(7)
    f.results["count"] = 3
    f.results["unserialisable"] = object()
    f.timings_ms["x"] = 1.23456
    for s in sinks:
        s.write(f)
        s.close()
    assert os.listdir(folder) == ["000007.jpg"]
    rec = json.loads(open(jsonl).read())
    assert rec["frame"] == 7 and rec["source"] == "src" and rec["results"] == {"count": 3}
    assert rec["timings_ms"] == {"x": 1.235}


def test_unwritable_destination_is_reported_before_frames_flow(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(SinkError, match="cannot create the folder for the video"):
        open_sink(str(blocker / "v.mp4")).open()


def test_video_sink_unknown_fourcc():
    with pytest.raises(SinkError, match="unknown video container"):
        VideoFileSink("x.webm")


def test_full_disk_stops_with_a_playable_file(tmp_path):
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        from segstream.stream.graph import Graph
        from segstream.stream.sources import open_source

        path = str(mnt / "v.avi")
        sink = open_sink(path, fps=10)
        rng = np.random.default_rng(0)
        noisy = [(rng.random((240, 320, 3)) * 255).astype(np.uint8) for _ in range(4)]  # ~100 KB per MJPG frame
        from segstream.stream.graph import FunctionStage

        def noise(f):
            f.overlay_bgr = noisy[f.seq % 4]
            return f

        g = Graph(open_source("synthetic://?width=320&height=240&frames=500"), [FunctionStage("noise", noise)], [sink])
        report = g.run(timeout=60)
        assert isinstance(report.error, SinkError) and "disk nearly full" in str(report.error)
        assert 5 < sink.frames_written < 500
        assert count_video_frames(path) == sink.frames_written
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
