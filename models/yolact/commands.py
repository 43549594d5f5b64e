"""``segstream predict | eval | train | export | verify`` for the YOLACT family.

Each command takes its options (``segstream.models.options``) and returns an exit code.
Inference for both backends goes through ``pipelines.yolact.YolactRunner`` (numpy pre- and
post-processing), so torch and ONNX Runtime results differ only by the network's arithmetic;
the predict output and COCO figures are the instance families' shared ones (``models.instances_io``).
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

from segstream.models.instances_io import onnx_backend, predict_instances, report_coco
from segstream.models.options import EvalOptions, ExportOptions, PredictOptions, TrainOptions, VerifyOptions
from segstream.stream.errors import ConfigError, ModelError


def _parse_size(text: str | None) -> int | None:
    """ "550" or "550x550" -> 550; YOLACT inputs are square."""
    if not text:
        return None
    parts = text.lower().split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--input-size: expected S or SxS (e.g. 550), got {text!r}") from None
    if len(vals) not in (1, 2) or (len(vals) == 2 and vals[0] != vals[1]) or min(vals) < 32:
        raise ConfigError(
            f"--input-size: YOLACT takes a square input of at least 32 px (e.g. 550 or 550x550), got {text!r}"
        )
    return vals[0]


def make_runner(model: str, weights: str, backend: str, **overrides):
    """A ``YolactRunner`` for ``--backend torch`` (a .pth checkpoint) or ``onnxruntime`` (.onnx)."""
    from segstream.pipelines.tasks.yolact import YolactRunner

    be = onnx_backend(model, weights, backend, "YOLACT")
    if be is not None:
        return YolactRunner(be, **overrides)
    from segstream.models.yolact.checkpoint import load_yolact
    from segstream.models.yolact.runtime import torch_runner

    net, _ = load_yolact(weights, model)
    return torch_runner(net, weights, **overrides)


def predict(opts: PredictOptions) -> int:
    """Runs the model on images; writes the detections JSON and/or overlays (``models.instances_io``)."""
    return predict_instances(opts, make_runner)


def evaluate(opts: EvalOptions) -> int:
    """Box and mask AP, AP50, AP75 on a COCO-format dataset (pycocotools)."""
    from segstream.models.coco_eval import evaluate_coco
    from segstream.models.yolact.data import CocoInstances

    if not opts.annotations or not opts.images:
        raise ConfigError("eval needs --annotations FILE.json and --images DIR (a COCO-format dataset)")
    data = CocoInstances(opts.annotations, opts.images)
    runner = make_runner(opts.model, opts.weights, opts.backend, mask_threshold=opts.mask_threshold)
    n_model = len(runner.metadata.class_names)
    if n_model != len(data.class_names):
        raise ConfigError(
            f"{opts.weights} predicts {n_model} classes but {opts.annotations} has {len(data.class_names)}; "
            "evaluate on a dataset with the model's classes"
        )
    return report_coco(opts, evaluate_coco(runner, data, progress=True))


def _load_for_finetune(net, path: str) -> list[str]:
    """Loads every tensor of a checkpoint (or an ImageNet backbone file) whose name and shape fit;
    returns the names left as initialised."""

    from segstream.models.yolact.checkpoint import _read, load_backbone

    obj = _read(path)
    if isinstance(obj.get("segstream"), dict):
        obj = obj["state_dict"]
    if not any(k.startswith(("backbone.", "fpn.", "prediction_layers.")) for k in obj):
        # An ImageNet backbone file (the official starting point): everything else stays initialised.
        load_backbone(net, path)
        return [k for k in net.state_dict() if not k.startswith("backbone.") and not k.endswith("num_batches_tracked")]
    own = net.state_dict()
    fit = {k: v for k, v in obj.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if len(fit) < len(own) // 2:
        raise ModelError(
            f"{path}: only {len(fit)} of {len(own)} tensors fit {net.cfg.name!r}; pass the --model it was trained as"
        )
    net.load_state_dict(fit, strict=False)
    return [k for k in own if k not in fit and not k.endswith("num_batches_tracked")]


# Backbone output at stride 4 (the prototypes' stride), for --proto-skip.
STRIDE4_LAYER = {"tiny": 1, "resnet50": 0, "resnet101": 0, "efficientnet_lite0": 2}


def training_config(
    cfg,
    size: int | None = None,
    ratios_text: str | None = None,
    square: str | None = None,
    mask_targets: str | None = None,
    mask_threshold: float | None = None,
    proto_skip: str | None = None,
):
    """The configuration ``train`` builds: anchor scales scaled to ``--input-size`` and
    ``--aspect-ratios`` / ``--square-anchors`` / ``--mask-targets`` / ``--mask-threshold`` /
    ``--proto-skip`` applied (ConfigError when malformed)."""
    from dataclasses import replace

    if size is not None and size != cfg.max_size:
        cfg = replace(cfg, max_size=size, pred_scales=tuple(int(s / cfg.max_size * size) for s in cfg.pred_scales))
    if ratios_text is not None:
        try:
            ratios = tuple(float(v) for v in ratios_text.split(","))
        except ValueError:
            raise ConfigError(
                f"--aspect-ratios: expected comma-separated numbers (e.g. 1,0.5,0.25), got {ratios_text!r}"
            ) from None
        if not ratios or any(not (0.05 <= r <= 20) for r in ratios) or len(set(ratios)) != len(ratios):
            raise ConfigError(
                f"--aspect-ratios: expected distinct ratios between 0.05 and 20 (e.g. 1,0.5,0.25), got {ratios_text!r}"
            )
        cfg = replace(cfg, aspect_ratios=ratios)
    if square is not None:
        cfg = replace(cfg, square_anchors=square == "on")
    if mask_targets is not None:
        cfg = replace(cfg, mask_targets=mask_targets)
    if mask_threshold is not None:
        if not 0 < mask_threshold < 1:
            raise ConfigError(f"--mask-threshold must be between 0 and 1 (official 0.5), got {mask_threshold}")
        cfg = replace(cfg, mask_threshold=float(mask_threshold))
    if proto_skip == "off":
        cfg = replace(cfg, proto_skip_layer=-1)
    elif proto_skip == "on":
        if cfg.backbone not in STRIDE4_LAYER:
            raise ConfigError(
                f"--proto-skip on: not available for the {cfg.backbone} backbone of {cfg.name} "
                f"(supported: {', '.join(STRIDE4_LAYER)})"
            )
        cfg = replace(cfg, proto_skip_layer=STRIDE4_LAYER[cfg.backbone])
    return cfg


def train(opts: TrainOptions) -> int:
    """Trains or fine-tunes on a COCO-format dataset and writes a checkpoint ``load_yolact`` reads."""
    import torch

    from segstream.models.yolact.checkpoint import checkpoint_metadata, save_yolact, with_checkpoint_settings
    from segstream.models.yolact.config import get_config
    from segstream.models.yolact.data import CocoInstances
    from segstream.models.yolact.model import Yolact
    from segstream.models.yolact.train import train_yolact

    if not opts.annotations or not opts.images:
        raise ConfigError("train needs --annotations FILE.json and --images DIR (a COCO-format dataset)")
    if opts.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {opts.batch_size}")
    data = CocoInstances(opts.annotations, opts.images)
    if opts.num_classes is not None and opts.num_classes != len(data.class_names):
        raise ConfigError(
            f"--num-classes {opts.num_classes} but {opts.annotations} has {len(data.class_names)} categories"
        )
    cfg = get_config(opts.model).with_classes(data.class_names)
    if opts.weights:
        # Fine-tuning keeps the starting checkpoint's input size, anchors and mask settings unless told otherwise.
        cfg = with_checkpoint_settings(cfg, checkpoint_metadata(opts.weights))
    cfg = training_config(
        cfg,
        _parse_size(opts.input_size),
        opts.aspect_ratios,
        opts.square_anchors,
        opts.mask_targets,
        opts.mask_threshold,
        opts.proto_skip,
    )
    torch.manual_seed(opts.seed)
    net = Yolact(cfg)
    if opts.weights:
        fresh = _load_for_finetune(net, opts.weights)
        if fresh:
            print(
                f"fine-tuning from {opts.weights}; re-initialised {len(fresh)} tensors (e.g. {fresh[0]})",
                file=sys.stderr,
            )
    elif cfg.backbone == "efficientnet_lite0" and opts.backbone_init == "imagenet":
        from segstream.models.yolact.lite import load_imagenet_backbone

        print(f"backbone: ImageNet EfficientNet-Lite0 ({load_imagenet_backbone(net)} tensors)", file=sys.stderr)
    iters = opts.iters or opts.epochs * math.ceil(len(data) / opts.batch_size)
    val = None
    if opts.val_annotations or opts.val_images:
        if not (opts.val_annotations and opts.val_images):
            raise ConfigError("validation needs both --val-annotations FILE.json and --val-images DIR")
        val = CocoInstances(opts.val_annotations, opts.val_images)
        if val.class_names != data.class_names:
            raise ConfigError(
                f"{opts.val_annotations} has classes {list(val.class_names)}, the training data "
                f"{list(data.class_names)}; validate on the same classes"
            )
    state_path = os.path.splitext(opts.out)[0] + ".last.pth"
    settings = {
        "model": opts.model,
        "annotations": os.path.abspath(opts.annotations),
        "iters": iters,
        "batch_size": opts.batch_size,
        "lr": opts.lr,
        "seed": opts.seed,
        "max_size": int(cfg.max_size),
        "aspect_ratios": [float(v) for v in cfg.aspect_ratios],
        "optimizer": opts.optimizer,
    }
    resume = None
    if opts.resume:
        from segstream.models.yolact.train import read_state

        resume = read_state(opts.resume, settings)
    checkpoint_every = opts.checkpoint_every
    report = train_yolact(
        net,
        data,
        iters=iters,
        batch_size=opts.batch_size,
        lr=opts.lr,
        seed=opts.seed,
        optimizer=opts.optimizer,
        checkpoint_every=checkpoint_every,
        checkpoint_path=opts.out if checkpoint_every and val is None else None,
        val_data=val,
        eval_every=opts.eval_every,
        best_path=opts.out if val is not None else None,
        state_path=state_path,
        resume=resume,
        stop_at=opts.stop_at,
        settings=settings,
    )
    if val is None and report.iteration == iters:
        save_yolact(net, opts.out, {"iterations": iters})
    first = float(np.mean(report.losses[: max(1, len(report.losses) // 10)])) if report.losses else float("nan")
    last = float(np.mean(report.losses[-max(1, len(report.losses) // 10) :])) if report.losses else float("nan")
    best = ""
    if report.best.get("score") is not None:
        best = f"; best validation mask AP50 {report.best['score']:.4f} at iteration {report.best['iter']}"
    where = opts.out if report.iteration == iters or val is not None else state_path
    print(
        f"trained to iteration {report.iteration} of {iters} in {report.seconds:.0f} s: loss {first:.3f} -> "
        f"{last:.3f}{best}; wrote {where} (resumable state {state_path})"
    )
    return 0


def _network(model: str, weights: str | None, num_classes: int | None):
    from segstream.models.yolact.checkpoint import load_yolact
    from segstream.models.yolact.config import get_config
    from segstream.models.yolact.model import Yolact

    if weights:
        net, _ = load_yolact(weights, model)
        return net
    cfg = get_config(model)
    if num_classes is not None:
        cfg = cfg.with_classes(tuple(f"class_{i}" for i in range(num_classes)))
    return Yolact(cfg).eval()


def export(opts: ExportOptions) -> int:
    """Writes the ONNX artifact (and, with --format tensorrt, builds an engine from it)."""
    from segstream.export.yolact import export_yolact_onnx

    if opts.dynamic:
        raise ConfigError("YOLACT exports at a fixed square size (its anchors are constants); drop --dynamic")
    net = _network(opts.model, opts.weights, opts.num_classes)
    size = _parse_size(opts.input_size)
    if size is not None and size != net.cfg.max_size:
        raise ConfigError(
            f"--input-size {size}: {opts.model} was built for {net.cfg.max_size} px and its anchors depend on it; "
            f"train at {size} (segstream train --input-size) or leave it out"
        )
    if opts.opset != 18:
        raise ConfigError(f"--opset {opts.opset}: YOLACT exports with opset 18 only")
    if opts.format == "onnx":
        export_yolact_onnx(net=net, out_path=opts.out, dynamic_batch=opts.dynamic_batch)
        print(f"wrote {opts.out}")
        return 0
    from segstream.export.tensorrt import build_engine

    onnx_path = os.path.splitext(opts.out)[0] + ".onnx"
    export_yolact_onnx(net=net, out_path=onnx_path, dynamic_batch=opts.dynamic_batch)
    build_engine(onnx_path=onnx_path, out_path=opts.out, fp16=opts.fp16, int8=opts.int8)
    print(f"wrote {onnx_path} and {opts.out}")
    return 0


def verify(opts: VerifyOptions) -> int:
    """Compares an ONNX artifact with the torch model: raw outputs and end-to-end detections."""
    from segstream.models.yolact.verify import verify_artifact

    if not opts.weights:
        raise ConfigError("verify needs --weights: the checkpoint the artifact was exported from")
    net = _network(opts.model, opts.weights, None)
    report = verify_artifact(opts.artifact, net)
    for line in report.lines():
        print(line)
    if not report.ok:
        raise ModelError(f"{opts.artifact} does not reproduce {opts.weights}: {report.failure}")
    return 0


def bench_subject(model: str, weights: str | None, size_hw: tuple[int, int] | None):
    """The network (``--weights`` or random) and its exporter for ``segstream bench``; YOLACT
    runs at its configuration's fixed square size."""
    from segstream.export.bench import BenchSubject
    from segstream.export.yolact import export_yolact_onnx
    from segstream.models.yolact.checkpoint import load_yolact
    from segstream.models.yolact.config import get_config
    from segstream.models.yolact.model import YolactExportWrapper, build_yolact
    from segstream.pipelines.tasks.yolact import INPUT_NAME, OUTPUT_NAMES

    net = load_yolact(weights, model)[0] if weights else build_yolact(get_config(model))
    s = net.cfg.max_size
    if size_hw is not None and size_hw != (s, s):
        raise ConfigError(
            f"{model} runs at its configuration's fixed size {s}x{s}; got --input-size {size_hw[0]}x{size_hw[1]}"
        )
    return BenchSubject(
        YolactExportWrapper(net.eval()).eval(),
        INPUT_NAME,
        list(OUTPUT_NAMES),
        (s, s),
        lambda path, _size: export_yolact_onnx(net=net, out_path=path),
    )
