"""``segstream predict | eval | train | export | verify`` for the semantic models.

Both backends go through the same numpy pre/post-processing (pipelines/tasks/road.py): the torch
one wraps the model in ``TorchBackend`` with the metadata its export would carry, so what
``predict --backend torch`` writes is what the exported artifact gives on a dashcam.
"""

from __future__ import annotations

import json
import os
import sys

import cv2

from segstream.pipelines.tasks.road import SemanticRunner, SizePolicy, render_overlay
from segstream.stream.config import parse_size_hw as parse_hw
from segstream.stream.errors import ConfigError, ModelError


def make_runner(args, **overrides) -> SemanticRunner:
    """The runner for ``--backend`` (``--weights``: a .pth for torch, an .onnx for onnxruntime)."""
    if args.backend == "onnxruntime":
        from segstream.stream.backends.factory import open_backend

        if not args.weights or not args.weights.endswith((".onnx", ".engine", ".plan")):
            raise ConfigError(f"--backend onnxruntime needs an exported .onnx in --weights, got {args.weights!r}; "
                              "run 'segstream export' first")
        backend = open_backend(args.weights)
        if backend.metadata is not None and backend.metadata.model != args.model:
            raise ModelError(f"{args.weights}: exported from {backend.metadata.model!r}, not {args.model!r}")
        return SemanticRunner(backend, **overrides)
    from segstream.models.semantic.zoo import LogitsOnly, artifact_metadata, load_model
    from segstream.models.torch_backend import TorchBackend

    if args.weights and args.weights.endswith(".onnx"):
        raise ConfigError(f"{args.weights} is an ONNX file; add --backend onnxruntime or pass a .pth checkpoint")
    loaded = load_model(args.model, args.weights, aux=False)
    backend = TorchBackend(LogitsOnly(loaded.model), input_names=["image"], output_names=["logits"],
                           metadata=artifact_metadata(loaded), channels_last=False)
    return SemanticRunner(backend, **overrides)


def predict(args) -> int:
    """Writes ``<mask-dir>/<stem>.png`` (uint8 class ids, image size) and, with ``--overlay``,
    ``<overlay>/<stem>.jpg`` per image."""
    if not args.mask_dir and not args.overlay:
        raise ConfigError("predict for a semantic model writes masks or overlays: give --mask-dir DIR and/or --overlay DIR")
    from segstream.models.semantic.data import read_image

    runner = make_runner(args, input_size_hw=parse_hw(getattr(args, "input_size", None)))
    for d in (args.mask_dir, args.overlay):
        if d:
            os.makedirs(d, exist_ok=True)
    for path in args.images:
        img = read_image(path)
        sem = runner(img)
        stem = os.path.splitext(os.path.basename(path))[0]
        if args.mask_dir:
            out = os.path.join(args.mask_dir, stem + ".png")
            if not cv2.imwrite(out, sem.class_ids):
                raise ModelError(f"{out}: cannot be written")
        if args.overlay:
            out = os.path.join(args.overlay, stem + ".jpg")
            if not cv2.imwrite(out, render_overlay(img, sem)):
                raise ModelError(f"{out}: cannot be written")
        # The drivable share only for a model with a road class (a binary U-Net has none).
        drivable = "" if sem.drivable_mask is None else f", drivable {float(sem.drivable_mask.mean()):.1%}"
        print(f"{path}: {sem.size_hw[1]}x{sem.size_hw[0]}{drivable}")
    runner.close()
    return 0


def evaluate(args) -> int:
    """mIoU, mean Dice, per-class IoU and Dice, pixel accuracy on ``--images`` / ``--labels`` in ``--layout``."""
    from segstream.models.semantic.data import CAMVID_CLASSES, camvid_prediction_lut, find_samples, read_image, read_label
    from segstream.models.semantic.metrics import ConfusionMatrix

    runner = make_runner(args, drivable=False, input_size_hw=parse_hw(getattr(args, "input_size", None)))
    names = runner.settings.class_names
    # CamVid: the standard 11-class figures, the model's classes mapped to CamVid's (data.py).
    pred_lut = camvid_prediction_lut(names) if args.layout == "camvid" else None
    if pred_lut is not None:
        names = CAMVID_CLASSES
    samples = find_samples(args.images, args.labels, args.layout, len(names))
    cm = ConfusionMatrix(len(names))
    for i, s in enumerate(samples, 1):
        sem = runner(read_image(s.image_path))
        label = read_label(s)
        if label.shape != sem.class_ids.shape:
            raise ModelError(f"{s.label_path}: label {label.shape} does not match image {sem.class_ids.shape}")
        cm.update(sem.class_ids if pred_lut is None else pred_lut[sem.class_ids], label)
        sys.stderr.write(f"\reval {i}/{len(samples)}")
    sys.stderr.write("\n")
    runner.close()
    doc = {"model": args.model, "images": len(samples), "layout": args.layout, **cm.summary(names)}
    print(f"mIoU {doc['miou']:.4f}  mean Dice {doc['mean_dice']:.4f}  pixel accuracy {doc['pixel_accuracy']:.4f}  "
          f"({len(samples)} images)")
    print(f"  {'class':14s} {'IoU':>7s} {'Dice':>7s}")
    for name, v in doc["per_class_iou"].items():
        print(f"  {name:14s} {v:7.4f} {doc['per_class_dice'][name]:7.4f}")
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    return 0


def train(args) -> int:
    from segstream.models.semantic.train import TrainConfig, train as run_training

    if not args.images or not args.labels:
        raise ConfigError("semantic training needs --images and --labels folders")
    if getattr(args, "optimizer", "sgd") != "sgd":
        raise ConfigError("semantic training uses SGD with the poly schedule; drop --optimizer")
    cfg = TrainConfig(
        model=args.model, images=args.images, labels=args.labels, out=args.out,
        layout=getattr(args, "layout", None) or "plain", weights=args.weights, num_classes=args.num_classes,
        input_size_hw=parse_hw(args.input_size) or (512, 1024), iters=args.iters, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr or 0.01, seed=args.seed,
        save_every=int(getattr(args, "checkpoint_every", 0) or 0),
        class_weights=getattr(args, "class_weights", None) or "none",
        val_images=getattr(args, "val_images", None), val_labels=getattr(args, "val_labels", None),
        eval_every=int(getattr(args, "eval_every", 0) or 0), resume=getattr(args, "resume", None),
        warmup_iters=int(getattr(args, "warmup_iters", 0) or 0), jitter=getattr(args, "jitter", None) or "basic",
        scale_range=_parse_range(getattr(args, "scale_range", None)) or (0.75, 1.25),
        weight_decay=1e-4 if getattr(args, "weight_decay", None) is None else args.weight_decay,
        backbone_init=getattr(args, "backbone_init", None) or "imagenet", threads=getattr(args, "threads", None),
        stop_at=getattr(args, "stop_at", None),
    )
    report = run_training(cfg)
    best = "" if report.best_miou is None else f"; best validation mIoU {report.best_miou:.4f} at iteration {report.best_iter}"
    print(f"trained to iteration {report.iters} in {report.seconds:.0f} s, loss {report.first_loss:.3f} -> "
          f"{report.last_loss:.3f}{best}; checkpoint {report.checkpoint}")
    return 0


def _parse_range(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--scale-range must be LOW,HIGH (e.g. 0.5,2.0), got {text!r}") from None
    return low, high


def export(args) -> int:
    """ONNX (or a TensorRT engine built from it). ``--dynamic``: any H/W; ``--input-size``: the
    trace size and, with ``--dynamic``, the size frames are resized to by default."""
    from segstream.export.semantic import export_semantic

    size = parse_hw(args.input_size)
    if not args.dynamic and size is None:
        from segstream.models.semantic.zoo import spec_of

        policy = spec_of(args.model).size_policy
        size = policy.size_hw if policy.kind == "fixed" else None
        if size is None:
            raise ConfigError(f"{args.model}: give --dynamic or a fixed --input-size HxW (e.g. 512x1024)")
    onnx_path = args.out if args.format == "onnx" else os.path.splitext(args.out)[0] + ".onnx"
    if args.format == "onnx" and (args.fp16 or args.int8):
        raise ConfigError("--fp16/--int8 apply to --format tensorrt; ONNX is exported in fp32")
    # --dynamic with --input-size: any size runs, frames are resized to that size by default.
    policy = SizePolicy(kind="fixed", size_hw=size) if args.dynamic and size else None
    export_semantic(model=args.model, weights=args.weights, out_path=onnx_path, num_classes=args.num_classes,
                    trace_size_hw=size or (512, 1024), dynamic_hw=bool(args.dynamic), opset=args.opset,
                    size_policy=policy)
    print(f"wrote {onnx_path}")
    if args.format == "tensorrt":
        from segstream.export.tensorrt import build_engine

        build_engine(onnx_path=onnx_path, out_path=args.out, fp16=args.fp16, int8=args.int8)
        print(f"wrote {args.out}")
    return 0


def verify(args) -> int:
    """ONNX Runtime vs torch: relative logit error <= 1e-4 and argmax agreement >= 99.9 %."""
    from segstream.export.onnx import read_metadata
    from segstream.export.semantic import PARITY_SIZES, check_parity
    from segstream.models.semantic.zoo import LogitsOnly, load_model

    meta = read_metadata(args.artifact)
    if meta.model != args.model:
        raise ModelError(f"{args.artifact}: exported from {meta.model!r}, not {args.model!r}")
    loaded = load_model(args.model, args.weights, num_classes=len(meta.class_names), aux=False,
                        output_stride=(meta.extra or {}).get("output_stride"))
    size = parse_hw(args.input_size)
    sizes = [size] if size else ([tuple(meta.input_size_hw)] if meta.input_size_hw else list(PARITY_SIZES))
    # U-Net: the runtime pads frames to a multiple of 2**depth, so the graph is checked at such sizes.
    sizes = [SizePolicy.from_dict((meta.extra or {}).get("size_policy")).padded_size(s) for s in sizes]
    results = check_parity(args.artifact, LogitsOnly(loaded.model).eval(), sizes)
    bad = 0
    for r in results:
        ok = r.ok()
        bad += not ok
        print(f"{r.size_hw[0]}x{r.size_hw[1]}: relative error {r.relative_error:.2e}, argmax agreement "
              f"{r.argmax_agreement:.5%} {'ok' if ok else 'FAIL'}")
    if bad:
        raise ModelError(f"{args.artifact}: {bad} of {len(results)} sizes outside 1e-4 relative / 99.9 % agreement")
    return 0
