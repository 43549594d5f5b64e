"""Checkpoints segstream wrote before the MobileNetV2 DeepLabV3+ kept VainF's block names still load."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import torch

from segstream.models.semantic.zoo import load_model, renumber_early_mobilenet_blocks
from tests.conftest import ROOT

WEIGHTS = os.path.join(ROOT, "weights", "deeplab_tiny_synthetic.pth")
ONNX = os.path.join(ROOT, "weights", "deeplab_tiny_synthetic.onnx")


def test_early_numbering_is_shifted_past_the_low_level_blocks_and_vainf_numbering_is_kept():
    t = torch.zeros(1)
    early = {f"backbone.low_level_features.{i}.w": t for i in range(4)}
    early |= {f"backbone.high_level_features.{i}.conv.0.weight": t for i in range(14)}
    out = renumber_early_mobilenet_blocks(early)
    assert sorted(int(k.split(".")[2]) for k in out if "high_level" in k) == list(range(4, 18))
    assert [k for k in out if "low_level" in k] == [f"backbone.low_level_features.{i}.w" for i in range(4)]
    vainf = dict(out)
    assert renumber_early_mobilenet_blocks(vainf) is vainf


def test_the_embedded_deeplab_tiny_checkpoint_loads_and_matches_its_shipped_onnx():
    # `make export-models` re-exports the shipped ONNX from this checkpoint: both must agree.
    loaded = load_model("deeplab_tiny", WEIGHTS)
    x = np.random.RandomState(0).rand(1, 3, 96, 160).astype(np.float32)
    with torch.no_grad():
        out = loaded.model(torch.from_numpy(x))
    logits = (out["out"] if isinstance(out, dict) else out).numpy()
    sess = ort.InferenceSession(ONNX, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert logits.shape == ref.shape
    assert np.abs(logits - ref).max() < 1e-3
