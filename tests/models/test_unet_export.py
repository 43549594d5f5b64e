"""U-Net to ONNX: dynamic size, a padding size policy in the metadata, ONNX Runtime against torch
at sizes other than the trace size, and the torch-free runner on frames of any size.

The export runs through the real CLI in a subprocess, as in test_semantic_export.py.
"""

import os
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from segstream.export.semantic import check_parity, export_semantic  # noqa: E402
from segstream.models.semantic.zoo import LogitsOnly, load_model, save_checkpoint  # noqa: E402
from segstream.stream.errors import ConfigError  # noqa: E402
from tests.conftest import ROOT, segstream_cmd  # noqa: E402

MODEL = "unet_tiny_binary"


@pytest.fixture(scope="module")
def unet_onnx(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("unet") / f"{MODEL}.onnx")
    res = subprocess.run(
        segstream_cmd("export", "--model", MODEL, "--dynamic", "--input-size", "60x90", "--out", out),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_metadata_says_frames_are_padded_to_a_multiple_of_2_pow_depth(unet_onnx):
    from segstream.export.onnx import read_metadata
    from segstream.pipelines.tasks.road import SemanticSettings, SizePolicy

    meta = read_metadata(unet_onnx)
    assert meta.model == MODEL and meta.class_names == ("background", "foreground") and meta.input_size_hw is None
    assert meta.extra["size_policy"] == {"kind": "fixed", "size_hw": [60, 90], "short_side": None, "pad_multiple": 8}
    policy = SemanticSettings.from_metadata(meta).size_policy
    assert policy == SizePolicy("fixed", size_hw=(60, 90), pad_multiple=8)
    assert policy.padded_size((60, 90)) == (64, 96)
    # a config input size keeps the padding
    assert SemanticSettings.from_metadata(meta, input_size_hw=(50, 70)).size_policy.pad_multiple == 8


def test_onnxruntime_matches_torch_at_sizes_other_than_the_trace_size(unet_onnx):
    module = LogitsOnly(load_model(MODEL).model).eval()
    for r in check_parity(unet_onnx, module, [(80, 136), (48, 40)], threads=2):
        assert r.relative_error <= 1e-4 and r.argmax_agreement >= 0.999, r


def test_verify_and_runners_pad_odd_frames_and_crop_back(unet_onnx, tmp_path, capsys):
    from segstream.models.options import VerifyOptions
    from segstream.models.semantic.commands import make_runner, verify

    # 61x93 is padded to 64x96 before the graph runs
    assert verify(VerifyOptions(artifact=unet_onnx, model=MODEL, weights=None, input_size="61x93")) == 0
    assert "64x96: relative error" in capsys.readouterr().out
    ckpt = str(tmp_path / "unet.pth")
    save_checkpoint(ckpt, load_model(MODEL))
    ort = make_runner(MODEL, unet_onnx, "onnxruntime", input_size_hw=None)
    native = make_runner(MODEL, unet_onnx, "onnxruntime", input_size_hw=(45, 77))
    tch = make_runner(MODEL, ckpt, "torch", input_size_hw=(45, 77))
    img = np.random.default_rng(0).integers(0, 256, (45, 77, 3), dtype=np.uint8)
    feeds, info = native.preprocess(img)
    assert feeds["image"].shape == (1, 3, 48, 80) and info.content_hw == (45, 77)
    assert np.all(feeds["image"][:, :, 45:] == 0) and np.all(feeds["image"][:, :, :, 77:] == 0)
    a, b = native(img), tch(img)
    assert a.class_ids.shape == (45, 77) and np.mean(a.class_ids == b.class_ids) >= 0.999
    assert ort(img).class_ids.shape == (45, 77)


def test_fixed_size_export_refuses_a_size_the_unet_cannot_take(tmp_path):
    with pytest.raises(ConfigError, match=r"multiple of 8, got 60x90; use 64x96 or --dynamic"):
        export_semantic(
            model=MODEL, weights=None, out_path=str(tmp_path / "x.onnx"), trace_size_hw=(60, 90), dynamic_hw=False
        )
    assert not os.path.exists(tmp_path / "x.onnx")
