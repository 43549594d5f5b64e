"""Mask R-CNN: the models, the checkpoint loader, and the ONNX export against torch at sizes
other than the trace size."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from segstream.export.maskrcnn import export_maskrcnn_onnx  # noqa: E402
from segstream.export.onnx import read_metadata  # noqa: E402
from segstream.models.maskrcnn.verify import verify_artifact  # noqa: E402
from segstream.models.maskrcnn.zoo import coco_class_names, load_maskrcnn, save_maskrcnn  # noqa: E402
from segstream.models.yolact.verify import sample_image  # noqa: E402
from segstream.pipelines.tasks.maskrcnn import OUTPUT_NAMES, MaskRCNNRunner  # noqa: E402
from segstream.stream.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from segstream.stream.errors import ConfigError, ModelError  # noqa: E402

TRACE_HW = (128, 160)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("maskrcnn")
    loaded = load_maskrcnn(None, "maskrcnn_tiny", num_classes=4)
    path = export_maskrcnn_onnx(loaded=loaded, out_path=str(d / "tiny.onnx"), trace_size_hw=TRACE_HW)
    return loaded, path


def test_metadata_describes_the_artifact(exported):
    loaded, path = exported
    meta = read_metadata(path)
    assert meta.model == "maskrcnn_tiny" and meta.task == "instances" and meta.input_size_hw is None
    assert meta.class_names == ("class_0", "class_1", "class_2") == loaded.class_names
    assert meta.color_order == "RGB" and meta.mean == pytest.approx((123.675, 116.28, 103.53))
    assert meta.std == pytest.approx((58.395, 57.12, 57.375))
    assert meta.extra["resize"] == {"min_size": 128, "max_size": 224, "size_divisible": 32}
    assert meta.extra["output_names"] == list(OUTPUT_NAMES) and meta.extra["mask_size"] == 28
    assert json.loads(meta.to_json())["extra"]["detections_per_img"] == 100


@pytest.mark.parametrize("frame_hw", [(480, 640), (300, 170), (222, 222)])
def test_onnxruntime_reproduces_torch_at_other_sizes(exported, frame_hw):
    """The frame is resized by the min/max rule to an input other than the 128x160 trace."""
    loaded, path = exported
    report = verify_artifact(path, loaded, sample_image(frame_hw, seed=frame_hw[0]))
    assert report.ok, report.lines()
    assert report.detections[0] == report.detections[1] > 10
    assert max(report.errors.values()) < 1e-4 and report.min_mask_iou > 0.99


def test_raw_outputs_have_dynamic_detection_count(exported):
    _, path = exported
    be = OnnxRuntimeBackend(path, providers=("cpu",))
    out = be.run({"image": np.random.default_rng(0).normal(size=(1, 3, 97, 203)).astype(np.float32)})
    n = len(out["scores"])
    assert out["boxes"].shape == (n, 4) and out["labels"].dtype == np.int64 and out["mask_probs"].shape == (n, 28, 28)
    assert (out["boxes"][:, 2] <= 203 + 1e-3).all() and (out["boxes"][:, 3] <= 97 + 1e-3).all()  # clipped to the input
    assert ((out["mask_probs"] >= 0) & (out["mask_probs"] <= 1)).all()
    assert set(out["labels"].tolist()) <= {1, 2, 3}


def test_no_detection_gives_empty_instances(tmp_path):
    loaded = load_maskrcnn(None, "maskrcnn_tiny", num_classes=4, box_score_thresh=0.99)
    path = export_maskrcnn_onnx(loaded=loaded, out_path=str(tmp_path / "none.onnx"), trace_size_hw=TRACE_HW)
    inst = MaskRCNNRunner(OnnxRuntimeBackend(path, providers=("cpu",)))(sample_image((90, 120)))
    assert len(inst) == 0 and inst.masks.shape == (0, 90, 120)


def test_checkpoint_round_trip(exported, tmp_path):
    loaded, _ = exported
    loaded.class_names = ("disc", "box", "triangle")
    path = save_maskrcnn(loaded, str(tmp_path / "tiny.pth"))
    again = load_maskrcnn(path, "maskrcnn_tiny")
    assert again.class_names == ("disc", "box", "triangle")
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k
    with pytest.raises(ModelError, match="a segstream checkpoint of 'maskrcnn_tiny', not 'maskrcnn_resnet50_fpn'"):
        load_maskrcnn(path, "maskrcnn_resnet50_fpn")
    with pytest.raises(ModelError, match="has 4 classes"):
        load_maskrcnn(path, "maskrcnn_tiny", num_classes=8)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04truncated zip"])
def test_unreadable_files_are_one_line_errors(tmp_path, content):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content)
    with pytest.raises(ModelError) as err:
        load_maskrcnn(str(bad), "maskrcnn_tiny")
    assert "cannot read it as a torch checkpoint" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelError, match="no such checkpoint file"):
        load_maskrcnn(str(tmp_path / "missing.pth"), "maskrcnn_tiny")


def test_torchvision_layouts_load_and_the_wrong_one_is_named(tmp_path):
    """A state dict in torchvision's released layout (v1: FrozenBatchNorm2d, no batch counters,
    under a trainer's "model" key) loads into maskrcnn_resnet50_fpn; v2 refuses it, saying why."""
    torch.manual_seed(1)
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    ref = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    state = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "maskrcnn_resnet50_fpn_coco.pth"
    torch.save({"model": state, "epoch": 26}, path)
    loaded = load_maskrcnn(str(path), "maskrcnn_resnet50_fpn")
    assert loaded.class_names == coco_class_names() and len(loaded.class_names) == 90
    assert torch.equal(
        loaded.model.state_dict()["roi_heads.mask_predictor.mask_fcn_logits.weight"],
        state["roi_heads.mask_predictor.mask_fcn_logits.weight"],
    )
    with pytest.raises(ModelError) as err:
        load_maskrcnn(str(path), "maskrcnn_resnet50_fpn_v2")
    msg = str(err.value)
    assert "does not fit maskrcnn_resnet50_fpn_v2" in msg and "missing" in msg and "\n" not in msg


def test_unknown_model_and_bad_classes():
    with pytest.raises(ConfigError, match="unknown Mask R-CNN model 'maskrcnn_r101'"):
        load_maskrcnn(None, "maskrcnn_r101")
    with pytest.raises(ConfigError, match="num_classes counts the background"):
        load_maskrcnn(None, "maskrcnn_tiny", num_classes=1)


def test_bench_model_measures_mask_rcnn():
    """``segstream bench model`` has a Mask R-CNN subject (no timing asserted, only what is reported)."""
    from segstream.export.bench import bench_model

    r = bench_model(model="maskrcnn_tiny", backend="onnxruntime", input_size_hw=(128, 160), iters=1, warmup=0)
    assert r["input_size"] == [128, 160] and r["latency_ms"]["p50"] > 0 and r["backend"] == "onnxruntime"
