"""bench model / compare / pipeline through the real CLI: JSON shapes and plots (no timing asserts)."""

from __future__ import annotations

import json
import subprocess

import cv2
import pytest

pytest.importorskip("torch")

from tests.conftest import ROOT, segstream_cmd  # noqa: E402


def _run(*args):
    out = subprocess.run(segstream_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def test_bench_model_json_shape_and_plot(tmp_path):
    j, png = tmp_path / "b.json", tmp_path / "b.png"
    _run(
        "bench",
        "model",
        "--model",
        "deeplab_tiny",
        "--backend",
        "onnxruntime",
        "--input-size",
        "64x96",
        "--iters",
        "3",
        "--json",
        str(j),
        "--plot",
        str(png),
    )
    doc = json.loads(j.read_text())
    assert set(doc) >= {
        "model",
        "backend",
        "device",
        "precision",
        "input_size",
        "iters",
        "latency_ms",
        "throughput_fps",
    }
    assert doc["input_size"] == [64, 96] and doc["iters"] == 3 and set(doc["latency_ms"]) == {"p50", "p95", "p99"}
    assert doc["latency_ms"]["p50"] > 0 and doc["throughput_fps"] > 0
    assert cv2.imread(str(png)) is not None


def test_bench_compare_reports_what_cannot_run(tmp_path):
    j, png = tmp_path / "c.json", tmp_path / "c.png"
    out = _run(
        "bench",
        "compare",
        "--model",
        "yolact_tiny",
        "--backends",
        "torch,onnxruntime,tensorrt",
        "--iters",
        "2",
        "--json",
        str(j),
        "--plot",
        str(png),
    )
    rows = json.loads(j.read_text())
    by = {r["backend"]: r for r in rows}
    assert "latency_ms" in by["torch"] and "latency_ms" in by["onnxruntime"]
    assert "error" in by["tensorrt"] and "tensorrt" in by["tensorrt"]["error"].lower()
    assert "vs torch" in out.stdout
    assert cv2.imread(str(png)) is not None


def test_bench_pipeline_runtime_json(tmp_path):
    j = tmp_path / "p.json"
    _run("bench", "pipeline", "--source", "synthetic://?width=320&height=180&frames=300", "--json", str(j))
    doc = json.loads(j.read_text())
    assert {"frames_in", "frames_out", "fps", "latency_ms", "stages", "bench"} <= set(doc)
    assert doc["frames_out"] == 300 and doc["bench"]["hops"] == 5


def test_bench_model_rejects_bad_sizes():
    out = subprocess.run(
        segstream_cmd("bench", "model", "--model", "yolact_tiny", "--input-size", "200x200"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "fixed size 160x160" in out.stderr


def test_bench_compare_refuses_an_exported_artifact_with_what_to_do():
    # compare exports the checkpoint for each backend itself; an artifact is timed by bench model
    out = subprocess.run(
        segstream_cmd("bench", "compare", "--model", "yolact_tiny", "--weights", "weights/yolact_tiny_synthetic.onnx"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "takes the torch checkpoint (.pth)" in out.stderr
    assert "bench model --weights ARTIFACT" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "artifact, model, size",
    [
        ("weights/yolact_tiny_synthetic.onnx", "yolact_tiny", [512, 512]),  # fixed size: the graph's
        ("weights/deeplab_tiny_synthetic.onnx", "deeplab_tiny", [360, 640]),  # dynamic: its size policy on a 720p frame
    ],
)
def test_bench_model_times_an_exported_artifact(tmp_path, artifact, model, size):
    j = tmp_path / "a.json"
    out = _run("bench", "model", "--model", model, "--weights", artifact, "--iters", "2", "--json", str(j))
    doc = json.loads(j.read_text())
    assert doc["model"] == model and doc["artifact"] == artifact and doc["backend"] == "onnxruntime"
    assert doc["input_size"] == size and doc["iters"] == 2 and doc["latency_ms"]["p50"] > 0
    assert f"{size[0]}x{size[1]}: p50" in out.stdout


def test_bench_model_artifact_at_a_given_size_when_dynamic(tmp_path):
    j = tmp_path / "a.json"
    _run(
        "bench",
        "model",
        "--model",
        "deeplab_tiny",
        "--weights",
        "weights/deeplab_tiny_synthetic.onnx",
        "--input-size",
        "64x96",
        "--iters",
        "1",
        "--json",
        str(j),
    )
    assert json.loads(j.read_text())["input_size"] == [64, 96]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--model", "yolact_tiny", "--weights", "weights/yolact_tiny_synthetic.onnx", "--input-size", "200x200"],
            "was exported at 512x512; got --input-size 200x200",
        ),
        (
            ["--model", "yolact_tiny", "--weights", "weights/yolact_tiny_synthetic.onnx", "--backend", "torch"],
            "--backend torch times the torch checkpoint (.pth)",
        ),
        (
            ["--model", "deeplab_tiny", "--weights", "weights/yolact_tiny_synthetic.onnx"],
            "exported from 'yolact_tiny', but --model is 'deeplab_tiny'",
        ),
        (["--model", "yolact_tiny", "--weights", "weights/missing.onnx"], "weights/missing.onnx: no such file"),
    ],
)
def test_bench_model_artifact_errors_say_what_to_do(extra, message):
    out = subprocess.run(segstream_cmd("bench", "model", *extra), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
