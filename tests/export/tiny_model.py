"""A tiny seeded conv net and its self-describing ONNX export, shared by the backend tests.

``export_tiny`` runs the export in a fresh interpreter: in a process where GStreamer was
initialised before torch was imported (tests/conftest.py probes GStreamer at import time),
torch's ONNX tracer crashes with a segmentation fault.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from segstream.stream.backends.base import ArtifactMetadata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY_META = ArtifactMetadata(
    model="tiny_conv",
    task="semantic",
    class_names=("road", "car", "person"),
    input_size_hw=None,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
    color_order="RGB",
    palette_bgr=((128, 64, 128), (142, 0, 0), (60, 20, 220)),
    extra={"stride": 1, "note": "unit test"},
    versions={"torch": "test"},
)


def tiny_net():
    """(1, 3, H, W) float32 -> logits (1, 3, H, W): conv 3x3, ReLU, conv 1x1. Seeded weights."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 3, 1),
    )
    return net.eval()


def _export_here(path: str, dynamic_hw: bool, size_hw: tuple[int, int], meta_json: str) -> str:
    import torch

    from segstream.export.onnx import export_onnx

    return export_onnx(
        model=tiny_net(),
        example_input=torch.zeros(1, 3, *size_hw),
        out_path=path,
        metadata=ArtifactMetadata.from_json(meta_json),
        input_names=["image"],
        output_names=["logits"],
        dynamic_hw=dynamic_hw,
    )


def export_tiny(path: str, *, dynamic_hw: bool = True, size_hw=(32, 48), metadata: ArtifactMetadata = TINY_META) -> str:
    """Exports ``tiny_net`` traced at ``size_hw`` to ``path`` (in a subprocess); returns the path."""
    args = json.dumps([str(path), bool(dynamic_hw), list(size_hw), metadata.to_json()])
    code = (
        "import json, sys\n"
        "from tests.export.tiny_model import _export_here\n"
        "p, d, s, m = json.loads(sys.argv[1])\n"
        "_export_here(p, d, tuple(s), m)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"export failed:\n{out.stderr[-3000:]}"
    return str(path)


def image_batch(size_hw, seed=1) -> np.ndarray:
    """(1, 3, H, W) float32 standard-normal values."""
    return np.random.default_rng(seed).normal(size=(1, 3, *size_hw)).astype(np.float32)
