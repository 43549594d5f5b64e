"""Mask R-CNN -> one self-describing ONNX file with dynamic height and width (opset 18, the
legacy TorchScript exporter that torchvision's detection models are tested with).

The graph is ``models.maskrcnn.zoo.MaskRCNNGraph``: image (1, 3, h, w), resized and normalised
by the runtime -> boxes, labels, scores, mask_probs (N x 28 x 28, not pasted). N is dynamic.
Resizing, box rescaling and mask pasting run on the host (``pipelines/tasks/maskrcnn.py``).
"""

from __future__ import annotations

from dataclasses import replace

from segstream.export.onnx import export_onnx, export_versions
from segstream.pipelines.tasks.maskrcnn import INPUT_NAME, OUTPUT_NAMES

#: Default size of the example input the graph is traced with (any size runs afterwards).
TRACE_SIZE_HW = (320, 448)


def export_maskrcnn_onnx(
    *, loaded, out_path: str, trace_size_hw: tuple[int, int] = TRACE_SIZE_HW, opset: int = 18
) -> str:
    """Exports a ``LoadedMaskRCNN`` to ``out_path``.

    Args:
        loaded: models.maskrcnn.zoo.LoadedMaskRCNN (model, name, class names).
        out_path: .onnx path; weights embedded.
        trace_size_hw: (h, w) of the example input; the exported graph accepts any size.
        opset: ONNX opset (18).

    Returns:
        out_path.
    """
    import torch

    from segstream.models.maskrcnn.zoo import MaskRCNNGraph, artifact_metadata

    graph = MaskRCNNGraph(loaded.model).eval()
    example = torch.zeros(1, 3, *trace_size_hw)
    meta = replace(artifact_metadata(loaded), versions=export_versions())
    detections = {
        "boxes": {0: "detections"},
        "labels": {0: "detections"},
        "scores": {0: "detections"},
        "mask_probs": {0: "detections"},
    }
    return export_onnx(
        model=graph,
        example_input=example,
        out_path=out_path,
        metadata=meta,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_hw=True,
        opset=opset,
        output_dynamic_axes=detections,
    )
