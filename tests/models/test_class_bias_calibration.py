"""bench/class_bias_calibration.py: the offsets it finds raise mIoU on the data they are tuned on,
never lower it, and --write puts them in the classifier bias so the checkpoint itself scores so."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.conftest import ROOT  # noqa: E402
from tests.models.semantic_data import write_dataset  # noqa: E402

SCRIPT = os.path.join(ROOT, "bench", "class_bias_calibration.py")


def _module():
    spec = importlib.util.spec_from_file_location("class_bias_calibration", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_calibrate_undoes_a_shift_towards_a_rare_class():
    """Logits that are right except for a +0.6 lean towards class 2 everywhere: 2 swallows some of
    class 0's pixels; the ascent takes the lean back and scores higher."""
    cal = _module()
    rng = np.random.default_rng(0)
    labels = rng.choice([0, 1, 2], size=(4, 32, 32), p=[0.6, 0.3, 0.1]).astype(np.uint8)
    logits = rng.normal(0, 0.5, (4, 3, 32, 32)).astype(np.float32)
    np.put_along_axis(logits, labels[:, None].astype(np.int64), 1.0, axis=1)
    logits[:, 2] += 0.6
    bias, before, after = cal.calibrate(logits.astype(np.float16), labels, 3)
    assert after > before + 0.05
    assert bias[2] - min(bias[0], bias[1]) < 0  # class 2 pulled back relative to the others
    assert cal.calibrate(logits.astype(np.float16), labels, 3, steps=(5.0,), rounds=1)[2] >= before  # never lower


def test_write_puts_the_offsets_in_the_classifier_bias(tmp_path):
    from segstream.models.semantic.train import TrainConfig, train

    images, labels = write_dataset(str(tmp_path / "data"), 6, size_hw=(64, 128))
    ckpt = str(tmp_path / "tiny.pth")
    train(
        TrainConfig(
            model="deeplab_tiny",
            images=images,
            labels=labels,
            out=ckpt,
            input_size_hw=(64, 128),
            iters=30,
            batch_size=2,
            lr=0.05,
            progress=False,
            threads=1,
        )
    )
    out = str(tmp_path / "calibrated.pth")
    run = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "--weights",
            ckpt,
            "--input-size",
            "64x128",
            "--images",
            images,
            "--labels",
            labels,
            "--write",
            out,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    before, after = (float(v) for v in run.stdout.split(":")[1].split("\n")[0].split("->"))
    assert after >= before
    saved = torch.load(out, weights_only=True)
    original = torch.load(ckpt, weights_only=True)
    key = "classifier.classifier.3.bias"
    offsets = np.asarray(saved["segstream"]["class_bias"], np.float32)
    np.testing.assert_allclose((saved["model_state"][key] - original["model_state"][key]).numpy(), offsets, atol=1e-4)
    # The calibrated checkpoint, evaluated the usual way, scores what the script reported.
    res = tmp_path / "eval.json"
    from segstream.cli import main

    assert (
        main(
            [
                "eval",
                "--model",
                "deeplab_tiny",
                "--weights",
                out,
                "--input-size",
                "64x128",
                "--images",
                images,
                "--labels",
                labels,
                "--json",
                str(res),
            ]
        )
        == 0
    )
    assert abs(json.loads(res.read_text())["miou"] - after) < 0.02
