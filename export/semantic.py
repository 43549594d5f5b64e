"""Semantic models -> one self-describing ONNX file, and the ONNX-vs-torch parity check.

The graph takes ``image`` (1, 3, H, W) float32 (RGB, ImageNet-normalised) and returns
``logits`` (1, C, H, W) float32 at the input size and ``labels`` (1, H, W) uint8, their argmax;
H and W are dynamic unless a fixed size is asked for, and the batch axis (N for 1) with
``dynamic_batch``. The metadata carries class names, palette, mean/std, colour order and the size
policy, so the runtime (pipelines/tasks/road.py) needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from segstream.export.onnx import export_onnx, export_versions, relative_error
from segstream.stream.errors import ConfigError, ModelError

#: Sizes the parity check runs at by default (H, W).
PARITY_SIZES = ((360, 640), (512, 1024), (720, 1280))


def export_semantic(
    *,
    model: str,
    weights: str | None,
    out_path: str,
    num_classes: int | None = None,
    trace_size_hw: tuple[int, int] = (512, 1024),
    dynamic_hw: bool = True,
    opset: int = 18,
    output_stride: int | None = None,
    size_policy=None,
    dynamic_batch: bool = False,
) -> str:
    """Exports a semantic model to ONNX.

    Args:
        model: registry name (``deeplabv3_mobilenet_v3_large``, ``deeplabv3plus_mobilenet``, ...).
        weights: checkpoint path, or None for random weights (tests, speed checks).
        out_path: the .onnx file to write (weights embedded).
        num_classes: classes for random weights (default 19); must match the file otherwise.
        trace_size_hw: (H, W) of the example input; with ``dynamic_hw`` False, the fixed size.
        dynamic_hw: dynamic height and width.
        opset: ONNX opset (18).
        output_stride: DeepLabV3+ only (default: from the checkpoint or its file name, else 16).
        size_policy: ``pipelines.road.SizePolicy`` the runtime applies to frames by default
            (dynamic exports; default: the model's, e.g. native for DeepLabV3+, shorter side
            520 for torchvision's models). A fixed-size export always resizes to its size.
            A model that needs sizes divisible by 2**depth (U-Net) is traced at the size
            rounded up, and its policy pads frames to that multiple (``pad_multiple``).
        dynamic_batch: a dynamic batch axis N on ``image``, ``logits`` and ``labels``, so the
            runtime can batch frames (``[batching] max_batch``).

    Returns:
        out_path.
    """
    import torch

    from segstream.models.semantic.zoo import LogitsAndLabels, artifact_metadata, load_model

    loaded = load_model(model, weights, num_classes=num_classes, aux=False, output_stride=output_stride)
    meta = artifact_metadata(
        loaded, input_size_hw=None if dynamic_hw else tuple(trace_size_hw), size_policy=size_policy
    )
    meta = replace(meta, versions=export_versions())
    pad = loaded.spec.size_policy
    padded = pad.padded_size(trace_size_hw)
    if not dynamic_hw and padded != tuple(trace_size_hw):
        raise ConfigError(
            f"{model}: a fixed input size must be a multiple of {pad.pad_multiple}, got "
            f"{trace_size_hw[0]}x{trace_size_hw[1]}; use {padded[0]}x{padded[1]} or --dynamic"
        )
    trace_size_hw = padded
    wrapped = LogitsAndLabels(loaded.model).eval()
    example = torch.zeros(1, 3, *trace_size_hw)
    return export_onnx(
        model=wrapped,
        example_input=example,
        out_path=out_path,
        metadata=meta,
        input_names=["image"],
        output_names=["logits", "labels"],
        dynamic_hw=dynamic_hw,
        opset=opset,
        dynamic_batch=dynamic_batch,
    )


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime against torch on one input.

    Attributes:
        size_hw: input (H, W).
        relative_error: max |onnx - torch| / max |torch| over the logits.
        argmax_agreement: fraction of pixels with the same argmax class, in [0, 1].
    """

    size_hw: tuple[int, int]
    relative_error: float
    argmax_agreement: float

    def ok(self, max_relative_error: float = 1e-4, min_agreement: float = 0.999) -> bool:
        return self.relative_error <= max_relative_error and self.argmax_agreement >= min_agreement


def check_parity(onnx_path: str, module, sizes=PARITY_SIZES, seed: int = 0, threads: int = 0) -> list[Parity]:
    """Runs the artifact (ONNX Runtime, CPU) and ``module`` (torch, fp32) on the same random
    normalised inputs at each size.

    Args:
        onnx_path: the exported file.
        module: torch module returning (1, C, H, W) logits (``LogitsOnly``), eval mode.
        sizes: (H, W) pairs.
        seed: input generator seed.
        threads: ONNX Runtime intra-op threads (0: default).
    """
    import torch

    from segstream.stream.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(onnx_path, providers=("cpu",), intra_op_threads=threads)
    rng = np.random.default_rng(seed)
    results = []
    try:
        for h, w in sizes:
            x = rng.normal(size=(1, 3, h, w)).astype(np.float32)
            outputs = backend.run({"image": x})
            got = outputs["logits"]
            with torch.inference_mode():
                ref = module(torch.from_numpy(x)).numpy()
            if got.shape != ref.shape:
                raise ModelError(f"{onnx_path}: logits {got.shape} at {h}x{w}, torch gives {ref.shape}")
            if "labels" in outputs and not np.array_equal(outputs["labels"], got.argmax(1)):
                raise ModelError(f"{onnx_path}: the labels output is not the argmax of the logits at {h}x{w}")
            agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
            results.append(Parity((h, w), relative_error(got, ref), agree))
    finally:
        backend.close()
    return results
