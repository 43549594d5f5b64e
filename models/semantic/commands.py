"""``segstream predict | eval | train | export | verify`` for the semantic models.

Both backends go through the same numpy pre/post-processing (pipelines/tasks/road.py): the torch
one wraps the model in ``TorchBackend`` with the metadata its export would carry, so what
``predict --backend torch`` writes is what the exported artifact gives on a dashcam.
"""

from __future__ import annotations

import json
import os

import cv2

from segstream.models.options import EvalOptions, ExportOptions, PredictOptions, TrainOptions, VerifyOptions
from segstream.pipelines.tasks.road import SemanticRunner, SizePolicy, render_overlay
from segstream.stream.config import parse_size_hw as parse_hw
from segstream.stream.errors import ConfigError, ModelError
from segstream.stream.progress import count_line, write_line


def make_runner(model: str, weights: str | None, backend: str, **overrides) -> SemanticRunner:
    """The runner for ``backend`` "torch" (``weights``: a .pth, or None for random weights) or
    "onnxruntime" (an exported .onnx, or an engine)."""
    if backend == "onnxruntime":
        from segstream.stream.backends.factory import open_backend

        if not weights or not weights.endswith((".onnx", ".engine", ".plan")):
            raise ConfigError(
                f"--backend onnxruntime needs an exported .onnx in --weights, got {weights!r}; "
                "run 'segstream export' first"
            )
        artifact = open_backend(weights)
        if artifact.metadata is not None and artifact.metadata.model != model:
            raise ModelError(f"{weights}: exported from {artifact.metadata.model!r}, not {model!r}")
        return SemanticRunner(artifact, **overrides)
    from segstream.models.semantic.zoo import LogitsOnly, artifact_metadata, load_model
    from segstream.models.torch_backend import TorchBackend

    if weights and weights.endswith(".onnx"):
        raise ConfigError(f"{weights} is an ONNX file; add --backend onnxruntime or pass a .pth checkpoint")
    loaded = load_model(model, weights, aux=False)
    network = TorchBackend(
        LogitsOnly(loaded.model),
        input_names=["image"],
        output_names=["logits"],
        metadata=artifact_metadata(loaded),
        channels_last=False,
    )
    return SemanticRunner(network, **overrides)


def predict(opts: PredictOptions) -> int:
    """Writes ``<mask-dir>/<stem>.png`` (uint8 class ids, image size) and, with ``--overlay``,
    ``<overlay>/<stem>.jpg`` per image."""
    if not opts.mask_dir and not opts.overlay:
        raise ConfigError(
            "predict for a semantic model writes masks or overlays: give --mask-dir DIR and/or --overlay DIR"
        )
    from segstream.models.semantic.data import read_image

    runner = make_runner(opts.model, opts.weights, opts.backend, input_size_hw=parse_hw(opts.input_size))
    for d in (opts.mask_dir, opts.overlay):
        if d:
            os.makedirs(d, exist_ok=True)
    for path in opts.images:
        img = read_image(path)
        sem = runner(img)
        stem = os.path.splitext(os.path.basename(path))[0]
        if opts.mask_dir:
            out = os.path.join(opts.mask_dir, stem + ".png")
            if not cv2.imwrite(out, sem.class_ids):
                raise ModelError(f"{out}: cannot be written")
        if opts.overlay:
            out = os.path.join(opts.overlay, stem + ".jpg")
            if not cv2.imwrite(out, render_overlay(img, sem)):
                raise ModelError(f"{out}: cannot be written")
        # The drivable share only for a model with a road class (a binary U-Net has none).
        drivable = "" if sem.drivable_mask is None else f", drivable {float(sem.drivable_mask.mean()):.1%}"
        print(f"{path}: {sem.size_hw[1]}x{sem.size_hw[0]}{drivable}")
    runner.close()
    return 0


def evaluate(opts: EvalOptions) -> int:
    """mIoU, mean Dice, per-class IoU and Dice, pixel accuracy on ``--images`` / ``--labels`` in ``--layout``."""
    from segstream.models.semantic.data import (
        CAMVID_CLASSES,
        camvid_prediction_lut,
        find_samples,
        read_image,
        read_label,
    )
    from segstream.models.semantic.metrics import ConfusionMatrix

    runner = make_runner(
        opts.model, opts.weights, opts.backend, drivable=False, input_size_hw=parse_hw(opts.input_size)
    )
    names = runner.settings.class_names
    # CamVid: the standard 11-class figures, the model's classes mapped to CamVid's (data.py).
    pred_lut = camvid_prediction_lut(names) if opts.layout == "camvid" else None
    if pred_lut is not None:
        names = CAMVID_CLASSES
    samples = find_samples(opts.images, opts.labels, opts.layout, len(names))
    cm = ConfusionMatrix(len(names))
    for i, s in enumerate(samples, 1):
        sem = runner(read_image(s.image_path))
        label = read_label(s)
        if label.shape != sem.class_ids.shape:
            raise ModelError(f"{s.label_path}: label {label.shape} does not match image {sem.class_ids.shape}")
        cm.update(sem.class_ids if pred_lut is None else pred_lut[sem.class_ids], label)
        write_line(count_line("eval", i, len(samples)), final=i == len(samples))
    runner.close()
    doc = {"model": opts.model, "images": len(samples), "layout": opts.layout, **cm.summary(names)}
    print(
        f"mIoU {doc['miou']:.4f}  mean Dice {doc['mean_dice']:.4f}  pixel accuracy {doc['pixel_accuracy']:.4f}  "
        f"({len(samples)} images)"
    )
    print(f"  {'class':14s} {'IoU':>7s} {'Dice':>7s}")
    for name, v in doc["per_class_iou"].items():
        print(f"  {name:14s} {v:7.4f} {doc['per_class_dice'][name]:7.4f}")
    if opts.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(opts.json_out)), exist_ok=True)
        with open(opts.json_out, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    return 0


def train(opts: TrainOptions) -> int:
    from segstream.models.semantic.train import TrainConfig
    from segstream.models.semantic.train import train as run_training

    if not opts.images or not opts.labels:
        raise ConfigError("semantic training needs --images and --labels folders")
    if opts.optimizer != "sgd":
        raise ConfigError("semantic training uses SGD with the poly schedule; drop --optimizer")
    cfg = TrainConfig(
        model=opts.model,
        images=opts.images,
        labels=opts.labels,
        out=opts.out,
        layout=opts.layout,
        weights=opts.weights,
        num_classes=opts.num_classes,
        input_size_hw=parse_hw(opts.input_size) or (512, 1024),
        iters=opts.iters,
        epochs=opts.epochs,
        batch_size=opts.batch_size,
        lr=opts.lr or 0.01,
        seed=opts.seed,
        save_every=opts.checkpoint_every,
        class_weights=opts.class_weights,
        val_images=opts.val_images,
        val_labels=opts.val_labels,
        eval_every=opts.eval_every,
        resume=opts.resume,
        warmup_iters=opts.warmup_iters,
        jitter=opts.jitter,
        scale_range=_parse_range(opts.scale_range) or (0.75, 1.25),
        weight_decay=1e-4 if opts.weight_decay is None else opts.weight_decay,
        backbone_init=opts.backbone_init,
        threads=opts.threads,
        stop_at=opts.stop_at,
    )
    report = run_training(cfg)
    best = (
        ""
        if report.best_miou is None
        else f"; best validation mIoU {report.best_miou:.4f} at iteration {report.best_iter}"
    )
    print(
        f"trained to iteration {report.iters} in {report.seconds:.0f} s, loss {report.first_loss:.3f} -> "
        f"{report.last_loss:.3f}{best}; checkpoint {report.checkpoint}"
    )
    return 0


def _parse_range(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--scale-range must be LOW,HIGH (e.g. 0.5,2.0), got {text!r}") from None
    return low, high


def export(opts: ExportOptions) -> int:
    """ONNX (or a TensorRT engine built from it). ``--dynamic``: any H/W; ``--input-size``: the
    trace size and, with ``--dynamic``, the size frames are resized to by default."""
    from segstream.export.semantic import export_semantic

    size = parse_hw(opts.input_size)
    if not opts.dynamic and size is None:
        from segstream.models.semantic.zoo import spec_of

        policy = spec_of(opts.model).size_policy
        size = policy.size_hw if policy.kind == "fixed" else None
        if size is None:
            raise ConfigError(f"{opts.model}: give --dynamic or a fixed --input-size HxW (e.g. 512x1024)")
    onnx_path = opts.out if opts.format == "onnx" else os.path.splitext(opts.out)[0] + ".onnx"
    if opts.format == "onnx" and (opts.fp16 or opts.int8):
        raise ConfigError("--fp16/--int8 apply to --format tensorrt; ONNX is exported in fp32")
    # --dynamic with --input-size: any size runs, frames are resized to that size by default.
    policy = SizePolicy(kind="fixed", size_hw=size) if opts.dynamic and size else None
    export_semantic(
        model=opts.model,
        weights=opts.weights,
        out_path=onnx_path,
        num_classes=opts.num_classes,
        trace_size_hw=size or (512, 1024),
        dynamic_hw=bool(opts.dynamic),
        opset=opts.opset,
        size_policy=policy,
        dynamic_batch=opts.dynamic_batch,
    )
    print(f"wrote {onnx_path}")
    if opts.format == "tensorrt":
        from segstream.export.tensorrt import build_engine

        build_engine(onnx_path=onnx_path, out_path=opts.out, fp16=opts.fp16, int8=opts.int8)
        print(f"wrote {opts.out}")
    return 0


def verify(opts: VerifyOptions) -> int:
    """ONNX Runtime vs torch: relative logit error <= 1e-4 and argmax agreement >= 99.9 %."""
    from segstream.export.onnx import read_metadata
    from segstream.export.semantic import PARITY_SIZES, check_parity
    from segstream.models.semantic.zoo import LogitsOnly, load_model

    meta = read_metadata(opts.artifact)
    if meta.model != opts.model:
        raise ModelError(f"{opts.artifact}: exported from {meta.model!r}, not {opts.model!r}")
    loaded = load_model(
        opts.model,
        opts.weights,
        num_classes=len(meta.class_names),
        aux=False,
        output_stride=(meta.extra or {}).get("output_stride"),
    )
    size = parse_hw(opts.input_size)
    sizes = [size] if size else ([tuple(meta.input_size_hw)] if meta.input_size_hw else list(PARITY_SIZES))
    # U-Net: the runtime pads frames to a multiple of 2**depth, so the graph is checked at such sizes.
    sizes = [SizePolicy.from_dict((meta.extra or {}).get("size_policy")).padded_size(s) for s in sizes]
    results = check_parity(opts.artifact, LogitsOnly(loaded.model).eval(), sizes)
    bad = 0
    for r in results:
        ok = r.ok()
        bad += not ok
        print(
            f"{r.size_hw[0]}x{r.size_hw[1]}: relative error {r.relative_error:.2e}, argmax agreement "
            f"{r.argmax_agreement:.5%} {'ok' if ok else 'FAIL'}"
        )
    if bad:
        raise ModelError(f"{opts.artifact}: {bad} of {len(results)} sizes outside 1e-4 relative / 99.9 % agreement")
    return 0


def bench_subject(model: str, weights: str | None, size_hw: tuple[int, int] | None):
    """The logits network (``--weights`` or random) and its exporter for ``segstream bench``, at
    ``size_hw`` (default: a 360x640 frame under the model's size policy)."""
    from segstream.export.bench import BenchSubject
    from segstream.export.semantic import export_semantic
    from segstream.models.semantic.zoo import LogitsOnly, load_model

    loaded = load_model(model, weights, aux=False)
    size = size_hw or loaded.spec.size_policy.padded_size((360, 640))  # U-Net: a multiple of 2**depth
    return BenchSubject(
        LogitsOnly(loaded.model).eval(),
        "image",
        ["logits"],
        size,
        lambda path, sz: export_semantic(
            model=model, weights=weights, out_path=path, trace_size_hw=sz, dynamic_hw=False
        ),
    )
