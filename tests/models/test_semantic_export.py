"""ONNX export of the semantic models: one self-describing file, dynamic H/W, and ONNX Runtime
against torch at 360x640, 512x1024 and 720x1280 on deeplab_tiny; the MobileNet models (random
weights) at 360x640 in the slow set.

The export runs through the real CLI in a subprocess (tests/conftest.py has initialised
GStreamer in this process, and torch's exporter has crashed in such processes before).
"""

import json
import os
import subprocess

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from segstream.export.semantic import PARITY_SIZES, check_parity  # noqa: E402
from segstream.models.semantic.zoo import LogitsOnly, load_model  # noqa: E402
from segstream.stream.errors import ModelError  # noqa: E402
from tests.conftest import ROOT, segstream_cmd  # noqa: E402


def _export(tmp_dir, model, *extra):
    out = os.path.join(str(tmp_dir), f"{model}.onnx")
    res = subprocess.run(
        segstream_cmd("export", "--model", model, "--out", out, *extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("export"), "deeplab_tiny", "--dynamic", "--input-size", "256x512")


def test_one_file_opset_18_dynamic_size_and_metadata(tiny_onnx):
    from segstream.export.onnx import read_metadata

    assert os.listdir(os.path.dirname(tiny_onnx)) == ["deeplab_tiny.onnx"]  # no .onnx.data side file
    proto = onnx.load(tiny_onnx)
    assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == 18
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert proto.graph.input[0].name == "image" and dims[:2] == [1, 3] and all(isinstance(d, str) for d in dims[2:])
    meta = read_metadata(tiny_onnx)
    assert meta.task == "semantic" and meta.model == "deeplab_tiny"
    assert meta.class_names[0] == "road" and len(meta.class_names) == 19
    assert meta.palette_bgr[13] == (142, 0, 0)
    assert meta.mean == (123.675, 116.28, 103.53) and meta.color_order == "RGB"
    # dynamic H/W; --input-size became the default resize of the runtime
    assert meta.input_size_hw is None and meta.extra["size_policy"] == {
        "kind": "fixed",
        "size_hw": [256, 512],
        "short_side": None,
    }
    from segstream.pipelines.tasks.road import SemanticSettings, SizePolicy

    assert SemanticSettings.from_metadata(meta).size_policy == SizePolicy("fixed", size_hw=(256, 512))
    assert SemanticSettings.from_metadata(meta, input_size_hw=(64, 96)).size_policy.size_hw == (64, 96)
    assert meta.extra["output_stride"] == 16 and "torch" in meta.versions and "onnx" in meta.versions


def _assert_parity(path, module, sizes):
    results = check_parity(path, module, sizes, threads=2)
    for r in results:
        assert r.relative_error <= 1e-4, r
        assert r.argmax_agreement >= 0.999, r
    return results


def test_onnxruntime_matches_torch_at_three_sizes(tiny_onnx):
    module = LogitsOnly(load_model("deeplab_tiny").model).eval()
    results = _assert_parity(tiny_onnx, module, PARITY_SIZES)
    assert [r.size_hw for r in results] == list(PARITY_SIZES)


def test_parity_check_catches_another_model(tiny_onnx):
    other = LogitsOnly(load_model("deeplab_tiny", num_classes=19).model).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05)
    (r,) = check_parity(tiny_onnx, other, [(64, 96)])
    assert not r.ok()


def test_verify_command_and_runner_agree_with_torch(tiny_onnx, tmp_path):
    from segstream.models.options import VerifyOptions
    from segstream.models.semantic.commands import make_runner, verify

    assert verify(VerifyOptions(artifact=tiny_onnx, model="deeplab_tiny", weights=None, input_size="200x300")) == 0
    with pytest.raises(ModelError, match="exported from 'deeplab_tiny', not 'deeplabv3plus_mobilenet'"):
        verify(VerifyOptions(artifact=tiny_onnx, model="deeplabv3plus_mobilenet", weights=None, input_size=None))
    # the same numpy pre/post around ONNX Runtime and around the torch module
    ckpt = tmp_path / "tiny.pth"
    from segstream.models.semantic.zoo import save_checkpoint

    save_checkpoint(str(ckpt), load_model("deeplab_tiny"))
    ort_runner = make_runner("deeplab_tiny", tiny_onnx, "onnxruntime")
    # the artifact resizes frames to its export size (256x512); the torch model is told the same
    torch_runner = make_runner("deeplab_tiny", str(ckpt), "torch", input_size_hw=(256, 512))
    assert ort_runner.settings.size_policy == torch_runner.settings.size_policy
    img = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    a, b = ort_runner(img), torch_runner(img)
    assert np.mean(a.class_ids == b.class_ids) >= 0.999


def test_artifact_carries_its_argmax_and_the_runtime_uses_it(tiny_onnx):
    import dataclasses

    from segstream.pipelines.tasks.road import SemanticRunner
    from segstream.stream.backends import open_backend

    x = np.random.default_rng(3).normal(size=(1, 3, 96, 160)).astype(np.float32)
    backend = open_backend(tiny_onnx)
    out = backend.run({"image": x})
    assert out["labels"].dtype == np.uint8 and out["labels"].shape == (1, 96, 160)
    assert np.array_equal(out["labels"], out["logits"].argmax(1))
    runner = SemanticRunner(backend)
    assert runner.settings.labels_output == "labels"
    numpy_argmax = SemanticRunner(backend, settings=dataclasses.replace(runner.settings, labels_output=None))
    img = np.random.default_rng(4).integers(0, 256, (150, 260, 3), dtype=np.uint8)
    assert np.array_equal(runner(img).class_ids, numpy_argmax(img).class_ids)
    # a graph whose labels output is not a class map is refused with a hint
    feeds, info = runner.preprocess(img)
    bad = runner.backend.run(feeds)
    bad["labels"] = bad["labels"].astype(np.int64)
    with pytest.raises(ModelError, match="re-export the model"):
        runner.postprocess(bad, info)


@pytest.mark.slow
@pytest.mark.parametrize(
    "model", ["deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "deeplabv3plus_mobilenet"]
)
def test_mobilenet_models_onnxruntime_matches_torch(tmp_path, model):
    path = _export(tmp_path, model, "--dynamic", "--input-size", "360x640")
    meta_json = json.loads(
        {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}["segstream"]
    )
    module = LogitsOnly(load_model(model, num_classes=len(meta_json["class_names"])).model).eval()
    # The full-size models at 360x640 only (2 shared CPU cores); the three sizes run on deeplab_tiny
    # above, and bench/semantic.py exports these models at 512x1024.
    _assert_parity(path, module, [(360, 640)])


def test_eval_and_predict_agree_through_torch_and_the_export(tiny_onnx, tmp_path):
    """`--input-size` runs the torch model at the artifact's size policy, so both backends give
    the same class maps and figures (`make eval-models` compares the embedded models this way)."""
    import glob

    from segstream.cli import main
    from segstream.models.semantic.zoo import save_checkpoint
    from tests.models.semantic_data import write_dataset

    images, labels = write_dataset(str(tmp_path / "data"), 3, size_hw=(120, 200))
    ckpt = str(tmp_path / "tiny.pth")
    save_checkpoint(ckpt, load_model("deeplab_tiny"))  # the random weights tiny_onnx was exported with
    files = sorted(glob.glob(os.path.join(images, "*.png")))

    def masks(*args):
        out = tmp_path / f"masks{len(list(tmp_path.iterdir()))}"
        assert main(["predict", "--model", "deeplab_tiny", *args, "--mask-dir", str(out), *files]) == 0
        return np.stack([cv2.imread(str(out / os.path.basename(f)), cv2.IMREAD_UNCHANGED) for f in files])

    ort_masks = masks("--weights", tiny_onnx, "--backend", "onnxruntime")
    assert np.mean(masks("--weights", ckpt, "--input-size", "256x512") == ort_masks) >= 0.999
    assert np.mean(masks("--weights", ckpt) == ort_masks) < 0.99  # at the images' own size they differ

    common = ["--model", "deeplab_tiny", "--images", images, "--labels", labels]
    a, b = tmp_path / "ort.json", tmp_path / "new" / "torch.json"  # --json creates its folder
    assert main(["eval", *common, "--weights", tiny_onnx, "--backend", "onnxruntime", "--json", str(a)]) == 0
    assert main(["eval", *common, "--weights", ckpt, "--input-size", "256x512", "--json", str(b)]) == 0
    ort_fig, torch_fig = json.loads(a.read_text()), json.loads(b.read_text())
    assert abs(ort_fig["miou"] - torch_fig["miou"]) < 0.005
    # YOLACT runs at its export size: the option is refused there with a reason
    assert main(["eval", "--model", "yolact_tiny", "--weights", ckpt, "--input-size", "256x512"]) == 2
