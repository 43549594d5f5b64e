"""Bad input through the real CLI: one-line errors, distinct exit codes, no hangs, nothing lost."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT, count_video_frames, segstream_cmd, write_video

ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def _run(*args, timeout=60):
    t0 = time.monotonic()
    out = subprocess.run(segstream_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ENV)
    return out, time.monotonic() - t0


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _src_missing(d):
    return str(d / "missing.mp4")


def _src_empty_dir(d):
    (d / "empty").mkdir()
    return str(d / "empty")


def _src_not_video(d):
    p = d / "notes.mp4"
    p.write_text("this is text, not video")
    return str(p)


def _src_camera(d):
    return "/dev/video63"


def _src_unreachable(d):
    return f"rtsp://admin:pw123@127.0.0.1:{_closed_port()}/live"


def _src_not_image(d):
    (d / "imgs").mkdir()
    cv2.imwrite(str(d / "imgs" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (d / "imgs" / "b.png").write_bytes(b"garbage")
    return str(d / "imgs")


@pytest.mark.parametrize(
    "make_source, code, message",
    [
        (_src_missing, 1, "missing.mp4: no such file; check the path"),
        (_src_empty_dir, 1, "the folder has no images"),
        (_src_not_video, 1, "not a video OpenCV/FFmpeg can decode"),
        (_src_camera, 1, "camera 63 cannot be opened"),
        (_src_unreachable, 1, "cannot connect within"),
        (_src_not_image, 1, "b.png: not an image OpenCV can read"),
    ],
)
def test_bad_sources(tmp_path, make_source, code, message):
    jsonl = tmp_path / "r.jsonl"
    out, took = _run(
        "run",
        "--source",
        make_source(tmp_path),
        "--pipeline",
        "edges",
        "--output",
        str(jsonl),
        "--quiet",
        "--set",
        "network.open_timeout_s=2",
    )
    assert out.returncode == code, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr and "pw123" not in out.stderr
    assert took < 30
    errors = [line for line in out.stderr.splitlines() if line.startswith("segstream: error:")]
    assert len(errors) == 1


def test_folder_with_one_bad_image_keeps_the_frames_before(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"{i}.png"), np.full((20, 30, 3), i * 50, np.uint8))
    (d / "3.png").write_bytes(b"garbage")
    jsonl = tmp_path / "r.jsonl"
    out, _ = _run("run", "--source", str(d), "--pipeline", "passthrough", "--output", str(jsonl), "--quiet")
    assert out.returncode == 1
    assert [json.loads(x)["frame"] for x in jsonl.read_text().splitlines()] == [0, 1, 2]
    assert "3 frames were written before the failure" in out.stderr


def test_truncated_video_processes_frames_before_the_damage(tmp_path):
    path = write_video(str(tmp_path / "v.avi"), 40, size_hw=(240, 320))
    data = open(path, "rb").read()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) * 2 // 3])
    video = tmp_path / "o.avi"
    metrics = tmp_path / "m.json"
    out, _ = _run(
        "run",
        "--source",
        str(tmp_path / "cut.avi"),
        "--pipeline",
        "edges",
        "--output",
        str(video),
        "--metrics-json",
        str(metrics),
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(metrics.read_text())
    assert 10 < doc["frames_out"] < 40
    assert doc["source"]["ended_early"] is True
    assert count_video_frames(str(video)) == doc["frames_out"]


def test_odd_frames_gray_bgra_16bit_and_size_changes(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "0.png"), np.full((48, 64), 128, np.uint8))
    cv2.imwrite(str(d / "1.png"), np.full((48, 64, 4), 90, np.uint8))
    cv2.imwrite(str(d / "2.png"), np.full((96, 40, 3), 40000, np.uint16))
    cv2.imwrite(str(d / "3.png"), np.full((48, 64, 3), 10, np.uint8))
    video = tmp_path / "o.avi"
    out, _ = _run("run", "--source", str(d), "--pipeline", "edges", "--output", str(video), "--quiet")
    assert out.returncode == 0, out.stderr
    assert count_video_frames(str(video)) == 4


def test_unwritable_output_is_reported_before_any_frame(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    out, _ = _run("run", "--source", "synthetic://?frames=5", "--output", str(blocker / "o.mp4"))
    assert out.returncode == 1
    assert "cannot create the folder for the video" in out.stderr


def _onnx_double(path, metadata: str | None = None):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    if metadata is not None:
        e = m.metadata_props.add()
        e.key, e.value = "segstream", metadata
    onnx.save(m, str(path))
    return str(path)


_YOLACT_META = json.dumps(
    {
        "model": "yolact_tiny",
        "task": "instances",
        "class_names": ["person", "car"],
        "input_size_hw": [8, 8],
        "mean": [0, 0, 0],
        "std": [1, 1, 1],
    }
)


@pytest.mark.parametrize(
    "make, extra, code, message",
    [
        (
            lambda d: (d / "junk.onnx").write_bytes(b"not a model") and str(d / "junk.onnx"),
            [],
            1,
            "ONNX Runtime cannot load it",
        ),
        (lambda d: _onnx_double(d / "plain.onnx"), [], 1, "expected a YOLACT instance artifact, found no metadata"),
        (lambda d: _onnx_double(d / "io.onnx", _YOLACT_META), [], 1, "expected inputs ['image']"),
        (lambda d: _onnx_double(d / "meta.onnx", "{not json"), [], 1, "metadata is not valid JSON"),
        (
            lambda d: _onnx_double(d / "p.onnx", _YOLACT_META),
            ["--set", "backend.providers=['cuda']", "--set", "backend.allow_fallback=false"],
            1,
            "onnxruntime-gpu",
        ),
    ],
)
def test_bad_model_artifacts(tmp_path, make, extra, code, message):
    path = make(tmp_path)
    out, took = _run(
        "run",
        "--pipeline",
        "instances",
        "--source",
        "synthetic://?frames=3",
        "--set",
        f"instances.artifact='{path}'",
        "--output",
        "null://",
        *extra,
    )
    assert out.returncode == code, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr and took < 60


def _pickled_object(path):
    torch = pytest.importorskip("torch")

    import argparse

    # An arbitrary object: weights_only=True must refuse to unpickle it.
    torch.save({"state_dict": {}, "payload": argparse.Namespace(cmd="rm -rf /")}, str(path))
    return str(path)


def _other_model_checkpoint(path):
    pytest.importorskip("torch")
    from segstream.models.semantic.zoo import load_model, save_checkpoint

    save_checkpoint(str(path), load_model("deeplab_tiny", None))
    return str(path)


def _truncated(path):
    data = open(os.path.join(ROOT, "weights", "yolact_tiny_synthetic.pth"), "rb").read()
    path.write_bytes(data[: len(data) // 3])
    return str(path)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: _other_model_checkpoint(d / "deeplab.pth"), "it is not a YOLACT checkpoint"),
        (lambda d: _truncated(d / "cut.pth"), "the file is damaged or truncated"),
        (lambda d: (d / "notes.pth").write_text("hello") and str(d / "notes.pth"), "notes.pth"),
        (lambda d: _pickled_object(d / "evil.pth"), "evil.pth"),
        (lambda d: str(d / "missing.pth"), "missing.pth"),
    ],
)
def test_bad_checkpoints_through_predict(tmp_path, make, message):
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.full((64, 96, 3), 120, np.uint8))
    weights = make(tmp_path)
    out, took = _run(
        "predict", "--model", "yolact_tiny", "--weights", weights, "--json", str(tmp_path / "o.json"), str(image)
    )
    assert out.returncode in (1, 2), out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("segstream: error:")]
    assert len(errors) == 1 and message in errors[0], out.stderr
    assert "Traceback" not in out.stderr and took < 60
    assert not (tmp_path / "o.json").exists()


def test_runtime_never_builds_a_shell():
    """Pipelines and sources never start a shell: GStreamer text goes to Gst.parse_launch only."""
    import ast

    offenders = []
    for room in ("stream", "pipelines"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, room)):
            for f in files:
                if not f.endswith(".py"):
                    continue
                path = os.path.join(dirpath, f)
                tree = ast.parse(open(path, encoding="utf-8").read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Call):
                        name = ast.unparse(node.func)
                        if name in (
                            "os.system",
                            "os.popen",
                            "subprocess.run",
                            "subprocess.Popen",
                            "subprocess.call",
                            "subprocess.check_output",
                            "subprocess.check_call",
                            "eval",
                            "exec",
                        ):
                            offenders.append(f"{path}:{node.lineno} {name}")
    assert not offenders, offenders
