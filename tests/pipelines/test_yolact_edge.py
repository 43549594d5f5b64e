"""YolactEdge's post-processing on numpy: per-class standard NMS (Fast R-CNN's greedy NMS with the
+1-pixel convention, as YolactEdge's ``Detect`` calls it) against a brute-force reference, the
artifact choosing its NMS, and the dashcam pipeline running a YolactEdge artifact."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from segstream.pipelines.tasks.yolact import YolactFrameInfo, YolactPostprocess, fast_nms, standard_nms
from tests.conftest import ROOT
from tests.pipelines.test_yolact import constant_artifact, random_outputs


def brute_force_standard_nms(boxes, scores, conf_thresh=0.05, iou_thresh=0.5, max_det=100, scale=550):
    """Literal loops over the traditional algorithm: per class, candidates above the threshold best
    first; a box survives when no *kept* box of its class has IoU >= the threshold with it; IoU
    on boxes times ``scale`` with areas (x2 - x1 + 1) * (y2 - y1 + 1), float32 scalars.

    Returns:
        [(score, class, prior)] best first.
    """
    f32 = np.float32
    px = boxes.astype(f32) * f32(scale)

    def iou(i, j):
        a, b = px[i], px[j]
        w = max(f32(0), min(a[2], b[2]) - max(a[0], b[0]) + f32(1))
        h = max(f32(0), min(a[3], b[3]) - max(a[1], b[1]) + f32(1))
        inter = f32(w * h)
        area_a = f32((a[2] - a[0] + f32(1)) * (a[3] - a[1] + f32(1)))
        area_b = f32((b[2] - b[0] + f32(1)) * (b[3] - b[1] + f32(1)))
        return f32(inter / f32(f32(area_a + area_b) - inter))

    kept = []
    for c in range(scores.shape[1] - 1):
        ranked = sorted(
            (p for p in range(len(boxes)) if scores[p, c + 1] > conf_thresh), key=lambda p: -scores[p, c + 1]
        )
        mine = []
        for p in ranked:
            if all(iou(q, p) < f32(iou_thresh) for q in mine):
                mine.append(p)
        kept.extend((float(scores[p, c + 1]), c, p) for p in mine)
    kept.sort(key=lambda t: (-t[0], t[1], t[2]))
    return kept[:max_det]


@pytest.mark.parametrize(
    "seed, n, num_classes, max_det, scale",
    [
        (0, 60, 3, 100, 550),
        (1, 150, 5, 100, 550),
        (2, 300, 4, 15, 550),
        (3, 40, 2, 5, 160),
        (4, 500, 6, 100, 550),
        (5, 700, 3, 30, 550),
    ],
)
def test_standard_nms_equals_brute_force(seed, n, num_classes, max_det, scale):
    rng = np.random.default_rng(seed)
    boxes, scores, coeffs = random_outputs(rng, n, num_classes)
    det = standard_nms(boxes, scores, coeffs, max_detections=max_det, pixel_scale=scale)
    ref = brute_force_standard_nms(boxes, scores, max_det=max_det, scale=scale)
    assert len(ref) > 0
    assert det.labels.tolist() == [c for _, c, _ in ref]
    np.testing.assert_array_equal(det.scores, np.array([s for s, _, _ in ref], np.float32))
    picked = [p for _, _, p in ref]
    np.testing.assert_allclose(det.boxes, boxes[picked], rtol=0, atol=1e-6)  # x * 550 / 550 in float32
    np.testing.assert_array_equal(det.coeffs, coeffs[picked])


def test_standard_nms_stops_early_without_changing_the_result():
    # Many candidates: the merged best-first visit with an early stop equals NMS over all of them.
    rng = np.random.default_rng(11)
    boxes, scores, coeffs = random_outputs(rng, 3000, 8, objects=40, spread=0.1)
    top = standard_nms(boxes, scores, coeffs, max_detections=100)
    everything = standard_nms(boxes, scores, coeffs, max_detections=10**6)
    assert len(everything.scores) > 100
    np.testing.assert_array_equal(top.labels, everything.labels[:100])
    np.testing.assert_array_equal(top.scores, everything.scores[:100])
    np.testing.assert_array_equal(top.boxes, everything.boxes[:100])


def _one_class(boxes_px, scores, scale=550):
    boxes = np.asarray(boxes_px, np.float32) / np.float32(scale)
    s = np.asarray(scores, np.float32)
    return boxes, np.stack([1 - s, s], 1).astype(np.float32), np.zeros((len(s), 2), np.float32)


def test_iou_at_the_threshold_suppresses_with_the_plus_one_convention():
    # In pixels at 550: [0, 0, 9, 9] has area 10 * 10 = 100 with the +1 convention; [0, 0, 9, 4]
    # has 10 * 5 = 50, all inside the first: IoU exactly 0.5 -> suppressed (>=). Without the +1
    # the IoU would be 9*4 / 81 = 0.44 and the box kept.
    boxes, scores, coeffs = _one_class([[0, 0, 9, 9], [0, 0, 9, 4]], [0.9, 0.8])
    det = standard_nms(boxes, scores, coeffs)
    assert det.scores.tolist() == pytest.approx([0.9])
    # Fast NMS (no +1, strict >): keeps both.
    assert len(fast_nms(boxes, scores, coeffs).scores) == 2
    # One pixel narrower: +1 IoU 10*4 / 100 = 0.4 -> kept.
    boxes, scores, coeffs = _one_class([[0, 0, 9, 9], [0, 0, 9, 3]], [0.9, 0.8])
    assert len(standard_nms(boxes, scores, coeffs).scores) == 2


def test_plus_one_is_counted_in_pixels_of_the_model_input():
    # The same normalised boxes: at pixel_scale 550 the +1 is small, at 20 it dominates.
    boxes = np.array([[0.1, 0.1, 0.3, 0.3], [0.1, 0.2, 0.3, 0.4]], np.float32)
    scores = np.array([[0.1, 0.9], [0.2, 0.8]], np.float32)
    coeffs = np.zeros((2, 2), np.float32)
    # 550 px: boxes 111 px tall overlapping 56 rows -> IoU 56*111 / (2*111*111 - 56*111) = 0.34: both kept.
    assert len(standard_nms(boxes, scores, coeffs, pixel_scale=550).scores) == 2
    # 20 px: 5 px tall, overlap 3 rows -> 3*5 / (25 + 25 - 15) = 0.43 -> kept; at 10 px: 3 px tall,
    # overlap 2 rows -> 2*3 / (9 + 9 - 6) = 0.5 -> suppressed.
    assert len(standard_nms(boxes, scores, coeffs, pixel_scale=20).scores) == 2
    assert len(standard_nms(boxes, scores, coeffs, pixel_scale=10).scores) == 1


def test_suppressed_boxes_do_not_suppress():
    # b overlaps a (suppressed), c overlaps b but not a: standard NMS keeps c, Fast NMS drops it.
    boxes, scores, coeffs = _one_class([[0, 0, 219, 219], [55, 0, 274, 219], [110, 0, 329, 219]], [0.9, 0.8, 0.7])
    assert standard_nms(boxes, scores, coeffs).scores.tolist() == pytest.approx([0.9, 0.7])
    assert fast_nms(boxes, scores, coeffs).scores.tolist() == pytest.approx([0.9])


def test_standard_nms_uses_every_candidate_and_thresholds_per_class():
    # 250 separate boxes of one class: Fast NMS looks at the best 200 only, standard NMS at all.
    rng = np.random.default_rng(3)
    x = np.arange(250, dtype=np.float32) * 2
    boxes = np.stack([x, x, x + 1, x + 1], 1) / np.float32(550)
    s = rng.uniform(0.06, 0.9, 250).astype(np.float32)
    scores = np.stack([1 - s, s], 1)
    det = standard_nms(boxes, scores, np.zeros((250, 2), np.float32), max_detections=1000)
    assert len(det.scores) == 250
    assert len(fast_nms(boxes, scores, np.zeros((250, 2), np.float32), max_detections=1000).scores) == 200
    # A prior kept as a candidate for class 1 (0.5) does not enter class 2's NMS at 0.04.
    two = np.array([[0.5, 0.5, 0.0], [0.46, 0.5, 0.04]], np.float32)
    det = standard_nms(boxes[:2], two, np.zeros((2, 2), np.float32))
    assert det.labels.tolist() == [0, 0]


def test_no_candidates_give_empty_detections():
    boxes = np.zeros((3, 4), np.float32)
    scores = np.tile(np.array([[0.97, 0.01, 0.02]], np.float32), (3, 1))
    det = standard_nms(boxes, scores, np.zeros((3, 5), np.float32))
    assert det.boxes.shape == (0, 4) and det.coeffs.shape == (0, 5) and det.labels.dtype == np.int64


def test_runner_follows_the_nms_the_artifact_names(tmp_path):
    from segstream.pipelines.tasks.yolact import YolactRunner
    from segstream.stream.backends import ArtifactMetadata, OnnxRuntimeBackend
    from segstream.stream.errors import ModelError

    rng = np.random.default_rng(5)
    boxes, scores, coeffs = random_outputs(rng, 400, 3, k=4)
    protos = np.maximum(rng.normal(0, 2, (1, 16, 16, 4)), 0).astype(np.float32)
    outs = {"boxes": boxes[None], "scores": scores[None], "coeffs": coeffs[None], "protos": protos}
    frame = np.zeros((48, 80, 3), np.uint8)
    info = YolactFrameInfo((48, 80), (64, 64))
    nms = {
        "method": "standard",
        "conf_thresh": 0.05,
        "iou_thresh": 0.5,
        "top_k": 200,
        "max_detections": 100,
        "mask_threshold": 0.5,
        "pixel_scale": 64.0,
    }
    meta = ArtifactMetadata(
        model="yolact_edge_mobilenetv2",
        task="instances",
        class_names=("a", "b", "c"),
        input_size_hw=(64, 64),
        mean=(0, 0, 0),
        std=(1, 1, 1),
        extra={"nms": nms},
    )
    runner = YolactRunner(OnnxRuntimeBackend(constant_artifact(str(tmp_path / "e.onnx"), outs, meta.to_json())))
    assert runner.postprocess.nms_method == "standard"
    inst = runner(frame)
    det = standard_nms(boxes, scores, coeffs, pixel_scale=64)
    np.testing.assert_array_equal(inst.scores, det.scores)
    np.testing.assert_array_equal(inst.labels, det.labels)
    expected = YolactPostprocess(("a", "b", "c"), nms_method="standard", pixel_scale=64)(outs, info)
    np.testing.assert_array_equal(inst.masks, expected.masks)
    fast = YolactPostprocess(("a", "b", "c"))(outs, info)
    assert fast.scores.tolist() != inst.scores.tolist()  # the two NMS differ on these outputs
    # YOLACT artifacts name no method: Fast NMS; an override switches it.
    meta_fast = ArtifactMetadata(
        model="yolact_tiny",
        task="instances",
        class_names=("a", "b", "c"),
        input_size_hw=(64, 64),
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    path = constant_artifact(str(tmp_path / "f.onnx"), outs, meta_fast.to_json())
    assert YolactRunner(OnnxRuntimeBackend(path)).postprocess.nms_method == "fast"
    switched = YolactRunner(OnnxRuntimeBackend(path), nms_method="standard")
    assert switched.postprocess.pixel_scale == 64.0  # the artifact's input size
    np.testing.assert_array_equal(switched(frame).scores, inst.scores)
    meta_bad = ArtifactMetadata(
        model="yolact_edge",
        task="instances",
        class_names=("a", "b", "c"),
        input_size_hw=(64, 64),
        mean=(0, 0, 0),
        std=(1, 1, 1),
        extra={"nms": {"method": "soft"}},
    )
    path = constant_artifact(str(tmp_path / "b.onnx"), outs, meta_bad.to_json())
    with pytest.raises(ModelError, match="NMS method 'soft' is not known here; expected one of fast, standard"):
        YolactRunner(OnnxRuntimeBackend(path))


def test_dashcam_pipeline_runs_a_yolactedge_artifact(tmp_path):
    pytest.importorskip("torch")
    from segstream.export.semantic import export_semantic
    from segstream.export.yolact import export_yolact_onnx
    from segstream.models.yolact.model import Yolact
    from tests.conftest import count_video_frames, segstream_cmd
    from tests.models.test_yolactedge import lively, small_config

    cfg = small_config("yolact_edge_mobilenetv2", 160)
    edge = export_yolact_onnx(net=lively(Yolact(cfg), seed=0), out_path=str(tmp_path / "edge.onnx"))
    deeplab = export_semantic(
        model="deeplab_tiny", weights=None, out_path=str(tmp_path / "deeplab.onnx"), trace_size_hw=(128, 224)
    )
    video, jsonl, metrics = tmp_path / "o.mp4", tmp_path / "r.jsonl", tmp_path / "m.json"
    out = subprocess.run(
        segstream_cmd(
            "run",
            "--pipeline",
            "dashcam",
            "--source",
            "synthetic://?width=320&height=180&frames=6",
            "--set",
            f"instances.artifact='{edge}'",
            "--set",
            f"semantic.artifact='{deeplab}'",
            "--set",
            "semantic.input_size=[96,160]",
            "--set",
            "instances.score_threshold=0.2",
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
    assert count_video_frames(str(video)) == 6
    records = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(6))
    found = [d for r in records for d in r["results"]["instances"]]
    assert found, "the random-weight YolactEdge found nothing to track"
    names = set(cfg.class_names)
    assert all(d["label_name"] in names and d["score"] > 0.2 for d in found)
    doc = json.loads(metrics.read_text())
    assert doc["frames_out"] == 6 and {"instances.pre", "instances.infer", "instances.post"} <= set(doc["stages"])
