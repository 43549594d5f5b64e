"""YOLACT pre/post-processing on numpy: anchors, Fast NMS against a brute-force reference,
the official fast transform, and the torch-free promise."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from segstream.pipelines.tasks.yolact import (
    YolactFrameInfo,
    YolactPostprocess,
    YolactPreprocess,
    box_iou_batched,
    decode_boxes,
    fast_nms,
    make_priors,
)
from tests.conftest import ROOT

SCALES = [[24], [48], [96], [192], [384]]
ARS = [[1, 0.5, 2]] * 5


@pytest.mark.parametrize(
    "sizes, max_size, count",
    [
        ([69, 35, 18, 9, 5], 550, 19248),
        ([88, 44, 22, 11, 6], 700, 30963),
    ],
)
def test_prior_counts(sizes, max_size, count):
    scales = [[int(s[0] / 550 * max_size)] for s in SCALES]
    pri = make_priors([(s, s) for s in sizes], scales, ARS, max_size)
    assert pri.shape == (count, 4) and pri.dtype == np.float32


def test_priors_match_the_official_values():
    pri = make_priors([(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)], SCALES, ARS, 550)
    # First prior as dumped from the official model: centre of cell (0, 0), 24 px square.
    np.testing.assert_allclose(pri[0], [0.5 / 69, 0.5 / 69, 24 / 550, 24 / 550], rtol=1e-6)
    # Square-anchor bug: h == w for every ratio; widths scale * sqrt(ar).
    assert np.array_equal(pri[:, 2], pri[:, 3])
    np.testing.assert_allclose(pri[1:3, 2] * 550, [24 * np.sqrt(0.5), 24 * np.sqrt(2)], rtol=1e-5)
    # Row-major order: the 4th prior is cell (row 0, col 1).
    np.testing.assert_allclose(pri[3, :2], [1.5 / 69, 0.5 / 69], rtol=1e-6)
    # Last level starts after 6391 cells of the first four levels.
    np.testing.assert_allclose(pri[(69**2 + 35**2 + 18**2 + 9**2) * 3, :3], [0.1, 0.1, 384 / 550], rtol=1e-5)
    without_bug = make_priors([(5, 5)], [[384]], [[1, 0.5, 2]], 550, square_anchors=False)
    np.testing.assert_allclose(without_bug[1, 3], 384 / np.sqrt(0.5) / 550, rtol=1e-5)


def test_decode_is_identity_for_zero_regression():
    pri = np.array([[0.5, 0.5, 0.2, 0.4]], np.float32)
    np.testing.assert_allclose(decode_boxes(np.zeros((1, 4), np.float32), pri), [[0.4, 0.3, 0.6, 0.7]], atol=1e-7)
    shifted = decode_boxes(np.array([[1.0, 0, np.log(2) / 0.2, 0]], np.float32), pri)
    np.testing.assert_allclose(shifted, [[0.52 - 0.2, 0.3, 0.52 + 0.2, 0.7]], atol=1e-6)


def brute_force_fast_nms(boxes, scores, coeffs, conf_thresh=0.05, iou_thresh=0.5, top_k=200, max_det=100):
    """Literal loops over the official algorithm."""
    cand = [p for p in range(len(boxes)) if scores[p, 1:].max() > conf_thresh]
    kept = []
    for c in range(scores.shape[1] - 1):
        ranked = sorted(cand, key=lambda p: (-scores[p, c + 1], cand.index(p)))[:top_k]
        for j, pj in enumerate(ranked):
            suppressed = False
            for pi in ranked[:j]:
                a, b = boxes[pi], boxes[pj]
                iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
                ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
                inter = iw * ih
                union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
                if inter / union > iou_thresh:
                    suppressed = True
                    break
            if not suppressed:
                kept.append((-scores[pj, c + 1], c, j, pj))
    kept.sort(key=lambda t: (t[0], t[1], t[2]))
    return kept[:max_det]


def random_outputs(rng, n, num_classes, k=4, objects=6, spread=0.05):
    """Boxes clustered around a few objects with peaked class scores, plus background clutter."""
    centres = rng.uniform(0.2, 0.8, (objects, 2))
    which = rng.integers(0, objects, n)
    c = centres[which] + rng.normal(0, spread, (n, 2))
    wh = rng.uniform(0.05, 0.3, (n, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32)
    logits = rng.normal(0, 1, (n, num_classes + 1))
    logits[:, 0] += rng.uniform(0, 4, n)
    obj_class = rng.integers(1, num_classes + 1, objects)
    logits[np.arange(n), obj_class[which]] += rng.uniform(0, 5, n)
    scores = np.exp(logits)
    scores = (scores / scores.sum(1, keepdims=True)).astype(np.float32)
    coeffs = rng.normal(0, 1, (n, k)).astype(np.float32)
    return boxes, scores, coeffs


@pytest.mark.parametrize(
    "seed, n, num_classes, top_k, max_det",
    [
        (0, 60, 3, 200, 100),
        (1, 150, 5, 20, 100),
        (2, 300, 4, 200, 15),
        (3, 40, 2, 10, 5),
        (4, 500, 6, 200, 100),
    ],
)
def test_fast_nms_equals_brute_force(seed, n, num_classes, top_k, max_det):
    rng = np.random.default_rng(seed)
    boxes, scores, coeffs = random_outputs(rng, n, num_classes)
    det = fast_nms(boxes, scores, coeffs, top_k=top_k, max_detections=max_det)
    ref = brute_force_fast_nms(boxes, scores, coeffs, top_k=top_k, max_det=max_det)
    assert len(ref) > 0
    assert det.labels.tolist() == [c for _, c, _, _ in ref]
    np.testing.assert_array_equal(det.scores, np.array([-s for s, _, _, _ in ref], np.float32))
    np.testing.assert_array_equal(det.boxes, boxes[[p for _, _, _, p in ref]])
    np.testing.assert_array_equal(det.coeffs, coeffs[[p for _, _, _, p in ref]])


def test_fast_nms_suppressed_boxes_still_suppress():
    # b overlaps a (suppressed), c overlaps b but not a: Fast NMS drops c too (traditional NMS would keep it).
    boxes = np.array([[0.0, 0, 0.4, 0.4], [0.1, 0, 0.5, 0.4], [0.2, 0, 0.6, 0.4]], np.float32)
    scores = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]], np.float32)
    det = fast_nms(boxes, scores, np.zeros((3, 2), np.float32))
    assert det.scores.tolist() == pytest.approx([0.9])


def test_fast_nms_filters_candidates_and_handles_none():
    boxes = np.array([[0, 0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6]], np.float32)
    scores = np.array([[0.96, 0.04], [0.9, 0.1]], np.float32)
    det = fast_nms(boxes, scores, np.zeros((2, 3), np.float32))
    assert len(det.scores) == 1 and det.boxes[0, 0] == pytest.approx(0.5)
    none = fast_nms(boxes, np.array([[1.0, 0.0], [1.0, 0.0]], np.float32), np.zeros((2, 3), np.float32))
    assert none.coeffs.shape == (0, 3)


def test_batched_iou():
    a = np.array([[[0, 0, 2, 2], [1, 1, 3, 3]]], np.float32)
    iou = box_iou_batched(a, a)
    np.testing.assert_allclose(iou[0], [[1, 1 / 7], [1 / 7, 1]], rtol=1e-6)


def test_preprocess_is_the_official_fast_transform():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 61, 3), dtype=np.uint8)
    before = img.copy()
    feeds, info = YolactPreprocess((50, 50))(img)
    x = feeds["image"]
    assert x.shape == (1, 3, 50, 50) and x.dtype == np.float32
    assert info.size_hw == (37, 61) and info.input_size_hw == (50, 50)
    resized = cv2.resize(img.astype(np.float32), (50, 50), interpolation=cv2.INTER_LINEAR)
    # BGR means/stds of the official code, then channels reversed to RGB.
    bgr = (resized - np.array([103.94, 116.78, 123.68], np.float32)) / np.array([57.38, 57.12, 58.40], np.float32)
    np.testing.assert_allclose(x[0], bgr[:, :, ::-1].transpose(2, 0, 1), atol=1e-5)
    dark, _ = YolactPreprocess((50, 50), mean=(0, 0, 0), std=(255, 255, 255))(img)
    np.testing.assert_allclose(dark["image"][0, 0], resized[:, :, 2] / 255, atol=1e-6)
    assert np.array_equal(img, before), "pre-processing must not modify its input"


def test_postprocess_masks_stay_in_boxes_and_boxes_are_pixels():
    rng = np.random.default_rng(3)
    n, k = 50, 8
    boxes, scores, coeffs = random_outputs(rng, n, 3, k=k)
    protos = np.maximum(rng.normal(0, 2, (1, 24, 24, k)), 0).astype(np.float32)
    outs = {"boxes": boxes[None], "scores": scores[None], "coeffs": coeffs[None], "protos": protos}
    inst = YolactPostprocess(("a", "b", "c"))(outs, YolactFrameInfo((90, 130), (100, 100)))
    assert len(inst) > 0 and inst.masks.shape == (len(inst), 90, 130)
    assert np.all(inst.boxes_xyxy == np.trunc(inst.boxes_xyxy))
    assert inst.boxes_xyxy[:, [0, 2]].max() <= 130 and inst.boxes_xyxy[:, [1, 3]].max() <= 90
    for i in range(len(inst)):
        ys, xs = np.nonzero(inst.masks[i])
        if len(ys):
            # Crop padding (1 cell), ceil to whole cells (1), bilinear reach (0.5 cell) and box truncation (1 px).
            pad_x, pad_y = 130 / 24 * 2.5 + 1, 90 / 24 * 2.5 + 1
            x1, y1, x2, y2 = inst.boxes_xyxy[i]
            assert xs.min() >= x1 - pad_x and xs.max() <= x2 + pad_x
            assert ys.min() >= y1 - pad_y and ys.max() <= y2 + pad_y
    strict = YolactPostprocess(("a", "b", "c"), score_threshold=0.5)(outs, YolactFrameInfo((90, 130), (100, 100)))
    assert np.all(strict.scores > 0.5) and len(strict) == int((inst.scores > 0.5).sum())


def test_runtime_module_loads_no_torch():
    code = "import sys, segstream.pipelines.tasks.yolact; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def constant_artifact(path, outputs: dict, meta_json: str):
    """A torch-free ONNX file whose outputs are fixed tensors (the image input only feeds a Shape)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Shape", ["image"], ["image_shape"])]
    outs = [helper.make_tensor_value_info("image_shape", TensorProto.INT64, [4])]
    for name, arr in outputs.items():
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name + "_value")))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(arr.shape)))
    graph = helper.make_graph(
        nodes, "constant_yolact", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64])], outs
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    entry = model.metadata_props.add()
    entry.key, entry.value = "segstream", meta_json
    onnx.save(model, path)
    return path


def test_runner_reads_its_settings_from_the_artifact(tmp_path):
    from segstream.pipelines.tasks.yolact import YolactRunner
    from segstream.stream.backends import ArtifactMetadata, OnnxRuntimeBackend

    rng = np.random.default_rng(7)
    boxes, scores, coeffs = random_outputs(rng, 80, 2, k=4)
    protos = np.maximum(rng.normal(0, 2, (1, 16, 16, 4)), 0).astype(np.float32)
    outs = {"boxes": boxes[None], "scores": scores[None], "coeffs": coeffs[None], "protos": protos}
    meta = ArtifactMetadata(
        model="yolact_tiny",
        task="instances",
        class_names=("a", "b"),
        input_size_hw=(64, 64),
        mean=(0, 0, 0),
        std=(1, 1, 1),
        extra={"nms": {"top_k": 5, "max_detections": 3}},
    )
    path = constant_artifact(str(tmp_path / "c.onnx"), outs, meta.to_json())
    runner = YolactRunner(OnnxRuntimeBackend(path))
    frame = np.zeros((48, 80, 3), np.uint8)
    inst = runner(frame)
    expected = YolactPostprocess(("a", "b"), top_k=5, max_detections=3)(outs, YolactFrameInfo((48, 80), (64, 64)))
    assert len(inst) == 3 and inst.class_names == ("a", "b") and inst.masks.shape == (3, 48, 80)
    np.testing.assert_array_equal(inst.scores, expected.scores)
    np.testing.assert_array_equal(inst.masks, expected.masks)
    fewer = YolactRunner(OnnxRuntimeBackend(path), score_threshold=float(inst.scores[1]))(frame)
    assert len(fewer) == 1


def test_runner_refuses_other_artifacts(tmp_path):
    from segstream.pipelines.tasks.yolact import YolactRunner
    from segstream.stream.backends import ArtifactMetadata, OnnxRuntimeBackend
    from segstream.stream.errors import ModelError

    one = {"boxes": np.zeros((1, 1, 4), np.float32)}
    sem = ArtifactMetadata(
        model="deeplab_tiny",
        task="semantic",
        class_names=("road",),
        input_size_hw=(64, 64),
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    path = constant_artifact(str(tmp_path / "s.onnx"), one, sem.to_json())
    with pytest.raises(ModelError, match="expected a YOLACT instance artifact, found model 'deeplab_tiny'"):
        YolactRunner(OnnxRuntimeBackend(path))
    inst = ArtifactMetadata(
        model="yolact_tiny", task="instances", class_names=("a",), input_size_hw=(64, 64), mean=(0, 0, 0), std=(1, 1, 1)
    )
    path = constant_artifact(str(tmp_path / "i.onnx"), one, inst.to_json())
    with pytest.raises(ModelError, match="expected inputs"):
        YolactRunner(OnnxRuntimeBackend(path))
