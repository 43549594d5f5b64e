"""``segstream predict | eval | export | verify`` for the Mask R-CNN family.

Both backends go through ``pipelines.maskrcnn.MaskRCNNRunner`` (numpy resize, box scaling and
mask pasting): ``--backend torch`` runs the export graph in ``TorchBackend``, so what predict
writes with torch is what the artifact gives on a dashcam. ``predict`` and ``eval`` share their
output and COCO figures with YOLACT (``models.instances_io``, ``models.coco_eval``).
"""

from __future__ import annotations

import numpy as np

from segstream.models.instances_io import onnx_backend, predict_instances, report_coco
from segstream.models.options import EvalOptions, ExportOptions, PredictOptions, TrainOptions, VerifyOptions
from segstream.stream.config import parse_size_hw
from segstream.stream.errors import ConfigError, ModelError


def make_runner(model: str, weights: str, backend: str, **settings):
    """A ``MaskRCNNRunner`` for ``--backend torch`` (a .pth checkpoint) or ``onnxruntime`` (.onnx)."""
    from segstream.pipelines.tasks.maskrcnn import MaskRCNNRunner

    be = onnx_backend(model, weights, backend, "Mask R-CNN")
    if be is not None:
        return MaskRCNNRunner(be, **settings)
    from segstream.models.maskrcnn.verify import torch_backend
    from segstream.models.maskrcnn.zoo import load_maskrcnn

    return MaskRCNNRunner(torch_backend(load_maskrcnn(weights, model)), **settings)


def predict(opts: PredictOptions) -> int:
    """Runs the model on images; writes the detections JSON (COCO RLE masks) and/or overlays."""
    return predict_instances(opts, make_runner)


def dataset_labels(model_names: tuple[str, ...], dataset_names: tuple[str, ...], annotations: str) -> np.ndarray:
    """Model label -> dataset label, -1 where the dataset has no such class.

    By name when the model's names cover the dataset's (torchvision's 90 COCO names, "N/A"
    included, against a COCO file's 80 categories), else by position when the counts agree.
    """
    index = {n: i for i, n in enumerate(dataset_names)}
    if set(dataset_names) <= set(model_names):
        return np.array([index.get(n, -1) for n in model_names], np.int64)
    if len(model_names) == len(dataset_names):
        return np.arange(len(model_names), dtype=np.int64)
    lacking = [n for n in dataset_names if n not in model_names]
    raise ConfigError(
        f"{annotations}: categories {lacking[:3]} are not among the model's {len(model_names)} classes; "
        "evaluate on a dataset with the model's classes"
    )


def evaluate(opts: EvalOptions) -> int:
    """Box and mask AP, AP50, AP75 on a COCO-format dataset (pycocotools), as for YOLACT."""
    from segstream.models.coco_eval import evaluate_coco
    from segstream.models.yolact.data import CocoInstances

    if not opts.annotations or not opts.images:
        raise ConfigError("eval needs --annotations FILE.json and --images DIR (a COCO-format dataset)")
    data = CocoInstances(opts.annotations, opts.images)
    runner = make_runner(opts.model, opts.weights, opts.backend, mask_threshold=opts.mask_threshold)
    lut = dataset_labels(runner.metadata.class_names, data.class_names, opts.annotations)

    def predict_in_dataset_labels(image_bgr):
        inst = runner(image_bgr)
        inst = inst[lut[inst.labels] >= 0]
        inst.labels = lut[inst.labels]
        inst.class_names = data.class_names
        return inst

    return report_coco(opts, evaluate_coco(predict_in_dataset_labels, data, progress=True))


def train(opts: TrainOptions) -> int:
    raise ConfigError(
        f"training {opts.model} is not wired in segstream; fine-tune with torchvision's detection "
        "references and load the resulting state dict with --weights"
    )


def _loaded(model: str, weights: str | None, num_classes: int | None):
    """The checkpoint, or random weights (seeded) with ``num_classes`` foreground classes."""
    from segstream.models.maskrcnn.zoo import load_maskrcnn

    if num_classes is not None and num_classes < 1:
        raise ConfigError(f"--num-classes counts foreground classes and must be >= 1, got {num_classes}")
    return load_maskrcnn(weights, model, num_classes=None if num_classes is None else num_classes + 1)


def export(opts: ExportOptions) -> int:
    """Writes the ONNX artifact (dynamic height and width)."""
    from segstream.export.maskrcnn import export_maskrcnn_onnx

    if opts.format != "onnx":
        raise ConfigError(f"--format {opts.format}: Mask R-CNN exports to ONNX only for now (run it with ONNX Runtime)")
    if opts.input_size:
        raise ConfigError(
            "Mask R-CNN exports with dynamic height and width and resizes frames by its own min/max "
            "size rule (written into the artifact); drop --input-size"
        )
    if opts.dynamic_batch:
        raise ConfigError(
            "--dynamic-batch: Mask R-CNN's outputs are rows per detection, not per image, so its graph "
            "cannot be batched; drop --dynamic-batch (run it with batching.max_batch = 1)"
        )
    loaded = _loaded(opts.model, opts.weights, opts.num_classes)
    export_maskrcnn_onnx(loaded=loaded, out_path=opts.out, opset=opts.opset)
    print(f"wrote {opts.out}")
    return 0


def verify(opts: VerifyOptions) -> int:
    """ONNX Runtime vs torch on one frame: raw outputs within 1e-4, same detections, mask IoU > 0.99.
    Without --weights the model is the seeded random one ``export`` writes without --weights."""
    from segstream.export.onnx import read_metadata
    from segstream.models.maskrcnn.verify import verify_artifact
    from segstream.models.yolact.verify import sample_image
    from segstream.pipelines.tasks.maskrcnn import model_size_hw

    meta = read_metadata(opts.artifact)
    if meta.model != opts.model:
        raise ModelError(
            f"{opts.artifact}: exported from {meta.model!r}, not {opts.model!r}; pass --model {meta.model}"
        )
    loaded = _loaded(opts.model, opts.weights, None if opts.weights else len(meta.class_names))
    size = parse_size_hw(opts.input_size) or (480, 640)
    report = verify_artifact(opts.artifact, loaded, sample_image(size))
    r = meta.extra["resize"]
    h, w = model_size_hw(size, r["min_size"], r["max_size"])
    print(f"frame {size[0]}x{size[1]} -> network input {h}x{w}")
    for line in report.lines():
        print(line)
    if not report.ok:
        raise ModelError(f"{opts.artifact} does not reproduce {opts.weights or 'the random model'}: {report.failure}")
    return 0


def bench_subject(model: str, weights: str | None, size_hw: tuple[int, int] | None):
    """The export graph (``--weights`` or random) and its exporter for ``segstream bench``, at
    ``size_hw`` (default 800x1088, a COCO-sized frame after the min/max resize)."""
    from segstream.export.bench import BenchSubject
    from segstream.export.maskrcnn import export_maskrcnn_onnx
    from segstream.models.maskrcnn.zoo import MaskRCNNGraph, load_maskrcnn
    from segstream.pipelines.tasks.maskrcnn import INPUT_NAME, OUTPUT_NAMES

    size = size_hw or (800, 1088)
    settings = {"min_size": min(size), "max_size": max(size)}
    if weights is None:
        # Random weights score every class alike, under the 0.05 floor: without it the full 100
        # detections reach the mask head, the cost a trained model pays on a busy frame.
        settings["box_score_thresh"] = 0.0
    loaded = load_maskrcnn(weights, model, **settings)
    return BenchSubject(
        MaskRCNNGraph(loaded.model).eval(),
        INPUT_NAME,
        list(OUTPUT_NAMES),
        size,
        lambda path, sz: export_maskrcnn_onnx(loaded=loaded, out_path=path, trace_size_hw=sz),
    )
