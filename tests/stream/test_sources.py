"""Sources by URI: files, folders, globs, conversions, errors."""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np
import pytest

from segstream.stream.errors import ConfigError, SourceError
from segstream.stream.sources import open_source, redact, redact_url
from segstream.stream.sources.file import ImageFolderSource, VideoFileSource
from segstream.stream.sources.live import CameraSource, NetworkSource, csi_pipeline
from segstream.stream.sources.synthetic import SyntheticSource
from tests.conftest import read_pattern_index, write_video

STOP = threading.Event()


def _drain(src, limit=1000):
    src.open()
    out = []
    try:
        while len(out) < limit:
            item = src.read(STOP)
            if item is None:
                break
            out.append(item)
    finally:
        src.close()
    return out


@pytest.mark.parametrize(
    "uri, cls",
    [
        ("clip.mp4", VideoFileSource),
        ("file:///data/clip.mp4", VideoFileSource),
        ("frames/*.png", ImageFolderSource),
        ("one.jpg", ImageFolderSource),
        ("/dev/video7", CameraSource),
        ("3", CameraSource),
        ("rtsp://user:pw@cam.local/stream", NetworkSource),
        ("http://127.0.0.1:8080/video.mjpg", NetworkSource),
        ("synthetic://?width=64&height=32&frames=5", SyntheticSource),
    ],
)
def test_factory_picks_the_source_class(uri, cls):
    assert isinstance(open_source(uri), cls)


@pytest.mark.parametrize(
    "uri, message",
    [
        ("", "empty source"),
        ("ftp://host/x", "ftp:// sources are not supported"),
        ("synthetic://?width=abc", "is not a valid int"),
        ("synthetic://?colour=red", "unknown option 'colour'"),
        ("synthetic://?width=0", "width and height must be in 1..16384"),
        ("csi://front", "expected csi://N"),
    ],
)
def test_factory_rejects_bad_uris(uri, message):
    with pytest.raises(ConfigError, match=message):
        open_source(uri)


def test_video_file_frames_in_order(tmp_path):
    path = write_video(str(tmp_path / "v.avi"), 12)
    src = open_source(path)
    items = _drain(src)
    assert [read_pattern_index(i.image_bgr) for i in items] == list(range(12))
    assert src.frame_count == 12 and src.fps == pytest.approx(25.0)
    assert items[1].pts_s > items[0].pts_s


def test_truncated_video_delivers_frames_before_the_damage(tmp_path):
    path = write_video(str(tmp_path / "v.avi"), 30, size_hw=(240, 320))
    data = open(path, "rb").read()
    cut = str(tmp_path / "cut.avi")
    open(cut, "wb").write(data[: len(data) // 2])
    src = open_source(cut)
    items = _drain(src)
    assert 5 <= len(items) < 30
    assert [read_pattern_index(i.image_bgr) for i in items] == list(range(len(items)))


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: str(d / "missing.mp4"), "no such file"),
        (lambda d: (open(d / "notvideo.mp4", "w").write("hello"), str(d / "notvideo.mp4"))[1], "not a video"),
        (lambda d: (os.mkdir(d / "empty"), str(d / "empty"))[1], "the folder has no images"),
        (lambda d: str(d / "nothing" / "*.png"), "no image matches"),
    ],
)
def test_bad_sources_raise_clear_errors(tmp_path, setup, message):
    with pytest.raises(SourceError, match=message):
        open_source(setup(tmp_path)).open()


def test_missing_camera_is_a_clear_error():
    with pytest.raises(SourceError, match="camera 57 cannot be opened"):
        open_source("/dev/video57").open()


def test_folder_converts_gray_bgra_16bit_and_sizes(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), np.full((10, 12), 200, np.uint8))
    cv2.imwrite(str(d / "b.png"), np.full((10, 12, 4), 100, np.uint8))
    cv2.imwrite(str(d / "c.png"), np.full((20, 8, 3), 60000, np.uint16))
    cv2.imwrite(str(d / "d.jpg"), np.full((5, 5, 3), 30, np.uint8))
    open(d / "notes.txt", "w").write("ignored")
    src = open_source(str(d))
    items = _drain(src)
    assert [i.image_bgr.shape for i in items] == [(10, 12, 3), (10, 12, 3), (20, 8, 3), (5, 5, 3)]
    assert all(i.image_bgr.dtype == np.uint8 for i in items)
    assert items[0].image_bgr[0, 0].tolist() == [200, 200, 200]
    assert items[2].image_bgr[0, 0].tolist() == [60000 >> 8] * 3
    assert src.stats()["converted"] == 3


def test_unreadable_image_in_folder_names_the_file(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), np.zeros((4, 4, 3), np.uint8))
    open(d / "b.png", "wb").write(b"not a png")
    src = open_source(str(d))
    src.open()
    assert src.read(STOP) is not None
    with pytest.raises(SourceError, match="b.png: not an image"):
        src.read(STOP)


def test_synthetic_is_deterministic_and_bounded():
    a = _drain(open_source("synthetic://?width=64&height=32&frames=7&seed=3"))
    b = _drain(open_source("synthetic://?width=64&height=32&frames=7&seed=3"))
    assert len(a) == 7
    assert all(np.array_equal(x.image_bgr, y.image_bgr) for x, y in zip(a, b))
    assert a[0].image_bgr.shape == (32, 64, 3)


def test_csi_pipeline_string():
    text = csi_pipeline(1, 1920, 1080, 30, flip=2)
    assert text.startswith("nvarguscamerasrc sensor-id=1 ! ")
    assert "width=1920,height=1080,framerate=30/1,format=NV12" in text
    assert "nvvidconv flip-method=2" in text
    assert text.endswith("appsink name=segstream_sink max-buffers=1 drop=true sync=false")
    src = open_source("csi://1")
    assert src.name == "csi://1" and src.live and "sensor-id=1" in src.description


@pytest.mark.parametrize(
    "text, expected",
    [
        ("rtsp://admin:secret@10.0.0.2:554/h264", "rtsp://***@10.0.0.2:554/h264"),
        ("failed to open http://u:p@host/x and rtsp://a:b@c/d", "failed to open http://***@host/x and rtsp://***@c/d"),
        ("http://host/x", "http://host/x"),
    ],
)
def test_redact(text, expected):
    assert redact(text) == expected


def test_network_source_name_has_no_credentials():
    src = open_source("rtsp://admin:secret@cam.local:554/live")
    assert "secret" not in src.name and "admin" not in src.name
    assert redact_url("rtsp://admin:secret@cam.local:554/live") == "rtsp://***@cam.local:554/live"
