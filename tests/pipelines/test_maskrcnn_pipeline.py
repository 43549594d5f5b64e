"""The instances and dashcam pipelines with a tiny exported Mask R-CNN (``instances.model``)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

torch = pytest.importorskip("torch")

from tests.conftest import ROOT, count_video_frames, segstream_cmd, write_video  # noqa: E402

YOLACT_DEMO = os.path.join(ROOT, "weights", "yolact_tiny_synthetic.onnx")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from segstream.export.maskrcnn import export_maskrcnn_onnx
    from segstream.models.maskrcnn.zoo import load_maskrcnn

    d = tmp_path_factory.mktemp("maskrcnn_pipeline")
    loaded = load_maskrcnn(None, "maskrcnn_tiny", num_classes=3)
    return export_maskrcnn_onnx(loaded=loaded, out_path=str(d / "tiny.onnx"), trace_size_hw=(128, 160))


def _run(*args, timeout=240):
    return subprocess.run(segstream_cmd("run", *args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("pipeline", ["instances", "dashcam"])
def test_pipeline_runs_mask_rcnn_end_to_end(tmp_path, artifact, pipeline):
    clip = write_video(str(tmp_path / "clip.avi"), 10, size_hw=(180, 320))
    video, jsonl, metrics = tmp_path / "o.mp4", tmp_path / "r.jsonl", tmp_path / "m.json"
    deeplab = os.path.join(ROOT, "weights", "deeplab_tiny_synthetic.onnx")
    out = _run(
        "--pipeline",
        pipeline,
        "--source",
        clip,
        "--set",
        "instances.model='maskrcnn_tiny'",
        "--set",
        f"instances.artifact='{artifact}'",
        "--set",
        f"semantic.artifact='{deeplab}'",
        "--set",
        "instances.score_threshold=0.0",
        "--set",
        "instances.top_k=20",
        # every frame's detections, tentative tracks too: random boxes rarely make confirmed tracks
        "--set",
        "tracking.report_tentative=true",
        "--output",
        str(video),
        "--output",
        str(jsonl),
        "--metrics-json",
        str(metrics),
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    assert count_video_frames(str(video)) == 10
    records = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(10))
    for r in records:
        inst = r["results"]["instances"]
        assert 0 < len(inst) <= 20  # random weights: many low-score boxes, capped by top_k
        assert {"track_id", "label", "label_name", "score", "box_xyxy", "mask_rle"} <= set(inst[0])
        assert inst[0]["mask_rle"]["size"] == [180, 320] and inst[0]["label_name"] in ("class_0", "class_1")
    assert any(i["track_id"] is not None and i["track_id"] >= 0 for i in records[-1]["results"]["instances"])
    doc = json.loads(metrics.read_text())
    assert doc["frames_out"] == 10 and {"instances.pre", "instances.infer", "instances.post", "track"} <= set(
        doc["stages"]
    )


@pytest.mark.parametrize(
    "model, which, message",
    [
        ("maskrcnn", "yolact", "instances.model is 'maskrcnn' but"),
        ("yolact", "maskrcnn", "instances.model is 'yolact' but"),
        ("maskrcnn_resnet50_fpn_v2", "maskrcnn", "holds 'maskrcnn_tiny'"),
        ("detr", "maskrcnn", "instances.model must be yolact, maskrcnn"),
    ],
)
def test_model_and_artifact_must_agree(artifact, model, which, message):
    path = artifact if which == "maskrcnn" else YOLACT_DEMO
    out = _run(
        "--pipeline",
        "instances",
        "--source",
        "synthetic://?width=64&height=48&frames=2",
        "--set",
        f"instances.model='{model}'",
        "--set",
        f"instances.artifact='{path}'",
        "--output",
        "null://",
        timeout=60,
    )
    err = out.stderr.strip()
    assert out.returncode == 2, err
    assert message in err and len(err.splitlines()) == 1, err
