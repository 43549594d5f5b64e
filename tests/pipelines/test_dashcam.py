"""The dashcam pipeline end to end with random-initialised tiny models exported to ONNX."""

from __future__ import annotations

import json
import subprocess

import pytest

torch = pytest.importorskip("torch")

from tests.conftest import ROOT, count_video_frames, segstream_cmd  # noqa: E402


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("artifacts")
    from segstream.export.semantic import export_semantic
    from segstream.export.yolact import export_yolact_onnx
    from segstream.models.yolact.config import get_config
    from segstream.models.yolact.model import build_yolact

    torch.manual_seed(0)
    yolact = str(d / "yolact.onnx")
    export_yolact_onnx(net=build_yolact(get_config("yolact_tiny")).eval(), out_path=yolact)
    deeplab = str(d / "deeplab.onnx")
    export_semantic(model="deeplab_tiny", weights=None, out_path=deeplab, trace_size_hw=(128, 224))
    return yolact, deeplab


@pytest.mark.parametrize("pipeline", ["dashcam", "instances", "road"])
def test_pipeline_end_to_end(tmp_path, artifacts, pipeline):
    yolact, deeplab = artifacts
    video, jsonl, metrics = tmp_path / "o.mp4", tmp_path / "r.jsonl", tmp_path / "m.json"
    out = subprocess.run(
        segstream_cmd(
            "run",
            "--pipeline",
            pipeline,
            "--source",
            "synthetic://?width=320&height=180&frames=12",
            "--set",
            f"instances.artifact='{yolact}'",
            "--set",
            f"semantic.artifact='{deeplab}'",
            "--set",
            "semantic.input_size=[96,160]",
            "--set",
            "semantic.smoothing='ema'",
            "--set",
            "instances.score_threshold=0.0",
            "--output",
            str(video),
            "--output",
            str(jsonl),
            "--metrics-json",
            str(metrics),
            "--quiet",
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    assert count_video_frames(str(video)) == 12
    records = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(12))
    doc = json.loads(metrics.read_text())
    assert doc["frames_out"] == 12 and doc["join_timeouts"] == 0
    if pipeline in ("dashcam", "road"):
        sem = records[-1]["results"]["semantic"]
        assert sem["size_hw"] == [180, 320] and abs(sum(sem["class_shares"].values()) - 1) < 1e-3
        assert "flicker_mean" in doc["extra"]["semantic.post"]
    if pipeline in ("dashcam", "instances"):
        assert isinstance(records[-1]["results"]["instances"], list)
        assert {"instances.pre", "instances.infer", "instances.post", "track"} <= set(doc["stages"])


def test_missing_artifact_is_a_config_error(tmp_path):
    out = subprocess.run(
        segstream_cmd(
            "run",
            "--pipeline",
            "instances",
            "--source",
            "synthetic://?frames=2",
            "--set",
            "instances.artifact='/nope/model.onnx'",
            "--output",
            "null://",
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "instances.artifact: /nope/model.onnx does not exist" in out.stderr


def test_wrong_kind_of_artifact_is_refused(tmp_path, artifacts):
    yolact, deeplab = artifacts
    out = subprocess.run(
        segstream_cmd(
            "run",
            "--pipeline",
            "instances",
            "--source",
            "synthetic://?frames=2",
            "--set",
            f"instances.artifact='{deeplab}'",
            "--output",
            "null://",
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "expected a YOLACT instance artifact" in out.stderr
