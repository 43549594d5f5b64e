"""Checks that an exported Mask R-CNN reproduces its torch model, through the same numpy
pre/post-processing (``pipelines.maskrcnn.MaskRCNNRunner``) on both sides."""

from __future__ import annotations

import numpy as np

from segstream.models.yolact.verify import VerifyReport, mask_ious, sample_image
from segstream.pipelines.tasks.maskrcnn import OUTPUT_NAMES, MaskRCNNRunner


def torch_backend(loaded):
    """A ``TorchBackend`` running the export graph, with the metadata the artifact would carry."""
    from segstream.models.maskrcnn.zoo import MaskRCNNGraph, artifact_metadata
    from segstream.models.torch_backend import TorchBackend

    return TorchBackend(
        MaskRCNNGraph(loaded.model),
        input_names=["image"],
        output_names=list(OUTPUT_NAMES),
        metadata=artifact_metadata(loaded),
        channels_last=False,
    )


def verify_artifact(path: str, loaded, image_bgr: np.ndarray | None = None, tolerance: float = 1e-4) -> VerifyReport:
    """Runs the artifact (ONNX Runtime, CPU) and the torch model on the same frame.

    Raw outputs are compared when both give the same number of detections (relative error of
    boxes, scores and mask probabilities); then the pasted detections (labels, mask IoU > 0.99).

    Args:
        path: the .onnx file. loaded: the ``LoadedMaskRCNN`` it came from.
        image_bgr: a frame (default: ``sample_image()``, 480 x 640, so the network input size
            follows the model's resize rule and differs from the export's trace size).
    """
    from segstream.export.onnx import relative_error
    from segstream.stream.backends.onnxruntime import OnnxRuntimeBackend

    ort = MaskRCNNRunner(OnnxRuntimeBackend(path, providers=("cpu",)))
    ref = MaskRCNNRunner(torch_backend(loaded))
    img = sample_image() if image_bgr is None else image_bgr
    feeds, _ = ref.preprocess(img)
    a, b = ort.backend.run(feeds), ref.backend.run(feeds)
    report = VerifyReport(tolerance=tolerance)
    same_n = len(a["scores"]) == len(b["scores"])
    if same_n and len(a["scores"]):
        report.errors = {n: relative_error(a[n], b[n]) for n in ("boxes", "scores", "mask_probs")}
    bad = [n for n, e in report.errors.items() if not e <= tolerance]
    ia, ib = ort(img), ref(img)
    report.detections = (len(ia), len(ib))
    report.labels_equal = len(ia) == len(ib) and bool(np.array_equal(ia.labels, ib.labels))
    if report.labels_equal and len(ia):
        report.min_mask_iou = float(mask_ious(ia.masks, ib.masks).min())
    if not same_n or not report.labels_equal:
        report.failure = "the detections differ"
    elif bad:
        report.failure = f"outputs {bad} differ by more than {tolerance:g}"
    elif report.min_mask_iou <= 0.99:
        report.failure = f"a mask differs (IoU {report.min_mask_iou:.3f})"
    return report
