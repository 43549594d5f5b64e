"""ONNX export of YOLACT: one opset-18 file with metadata; ONNX Runtime reproduces torch."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from segstream.export.onnx import read_metadata, relative_error  # noqa: E402
from segstream.export.yolact import export_yolact_onnx  # noqa: E402
from segstream.models.yolact.config import get_config  # noqa: E402
from segstream.models.yolact.data import CocoInstances  # noqa: E402
from segstream.models.yolact.model import Yolact  # noqa: E402
from segstream.models.yolact.runtime import TorchYolactBackend, torch_runner  # noqa: E402
from segstream.models.yolact.verify import mask_ious, sample_image, verify_artifact  # noqa: E402
from segstream.pipelines.tasks.yolact import OUTPUT_NAMES, YolactPreprocess, YolactRunner  # noqa: E402
from segstream.stream.backends import OnnxRuntimeBackend  # noqa: E402
from tests.models.yolact_helpers import trained_tiny  # noqa: E402


@pytest.mark.parametrize("name", ["yolact_tiny", "yolact_mobilenetv3"])
def test_onnx_runtime_reproduces_torch(tmp_path, name):
    torch.manual_seed(0)
    net = Yolact(get_config(name)).eval()
    path = export_yolact_onnx(net=net, out_path=str(tmp_path / f"{name}.onnx"))
    assert os.listdir(tmp_path) == [f"{name}.onnx"]  # one file, weights inside
    model = onnx.load(path)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 18
    ort = OnnxRuntimeBackend(path, intra_op_threads=1)
    ref = TorchYolactBackend(net)
    img = sample_image((360, 640), seed=3)
    feeds, _ = YolactPreprocess.from_metadata(ort.metadata)(img)
    a, b = ort.run(feeds), ref.run(feeds)
    for n in OUTPUT_NAMES:
        assert a[n].shape == b[n].shape
        assert relative_error(a[n], b[n]) < 1e-4, n
    s = net.cfg.max_size
    assert a["protos"].shape[1:3] == ((s // 8 + (s % 8 > 0)) * 2,) * 2


def test_metadata_describes_the_artifact(tmp_path):
    cfg = get_config("yolact_tiny").with_classes(("disc", "box"))
    path = export_yolact_onnx(net=Yolact(cfg), out_path=str(tmp_path / "m.onnx"))
    meta = read_metadata(path)
    assert meta.model == "yolact_tiny" and meta.task == "instances"
    assert meta.class_names == ("disc", "box") and meta.input_size_hw == (160, 160)
    assert meta.mean == pytest.approx((123.68, 116.78, 103.94)) and meta.color_order == "RGB"
    assert meta.extra["num_priors"] == 1614 and meta.extra["outputs"] == list(OUTPUT_NAMES)
    assert meta.extra["anchors"]["square"] is True and meta.extra["nms"]["top_k"] == 200
    assert "torch" in meta.versions


def test_end_to_end_detections_agree(tmp_path):
    net, cfg, _, ann, imgs = trained_tiny()
    path = export_yolact_onnx(net=net, out_path=str(tmp_path / "trained.onnx"))
    report = verify_artifact(path, net)
    assert report.ok, report.lines()
    data = CocoInstances(ann, imgs)
    ort_runner = YolactRunner(OnnxRuntimeBackend(path, intra_op_threads=1))
    ref_runner = torch_runner(net)
    total = 0
    for image_id in data.image_ids[:4]:
        img = data.load(image_id).image_bgr
        a, b = ort_runner(img), ref_runner(img)
        assert a.labels.tolist() == b.labels.tolist()
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-6)
        assert np.abs(a.boxes_xyxy - b.boxes_xyxy).max() <= 1
        assert mask_ious(a.masks, b.masks).min() > 0.99
        total += int((a.scores > 0.5).sum())
    assert total >= 4  # the trained model finds the shapes


def test_verify_catches_a_different_network(tmp_path):
    torch.manual_seed(0)
    net = Yolact(get_config("yolact_tiny")).eval()
    path = export_yolact_onnx(net=net, out_path=str(tmp_path / "a.onnx"))
    torch.manual_seed(1)
    other = Yolact(get_config("yolact_tiny")).eval()
    report = verify_artifact(path, other)
    assert not report.ok and "differ" in report.failure
