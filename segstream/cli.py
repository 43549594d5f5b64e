"""The command line: parses arguments and calls into the rooms. Nothing else lives here.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error, 130 interrupted
before the graph could finish (never after a clean drain: a drained stop exits 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from segstream.stream.errors import ConfigError, SegstreamError

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"segstream: error: {message} (see '{self.prog} --help')\n")


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="stream a source through a pipeline to sinks")
    p.add_argument("--config", help="TOML config (default: the built-in defaults, or ./config.toml if present)")
    p.add_argument(
        "--source",
        action="append",
        default=None,
        help="source URI: file, folder, glob, /dev/videoN, N, csi://N, rtsp://, http(s)://, gst:..., synthetic://, "
        "stack:///series (slices), tiles:///map.tif (a large image as tiles); repeat for several in one graph "
        "(ids cam0, cam1, ...)",
    )
    p.add_argument(
        "--output",
        action="append",
        default=None,
        help="sink URI; repeat for several (file.mp4, dir/, x.jsonl, display://0, gst:..., null://)",
    )
    p.add_argument(
        "--pipeline", help="pipeline name (passthrough, edges, dashcam, instances, road, medical, satellite)"
    )
    p.add_argument("--max-frames", type=int, help="stop after N frames from the source")
    p.add_argument("--metrics-json", help="write the run's metrics to this JSON file")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. runtime.queue_size=8",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _add_model_args(p, *, weights_required: bool) -> None:
    p.add_argument("--model", required=True, help="model name, e.g. yolact_mobilenetv3, deeplabv3_mobilenet_v3_large")
    p.add_argument(
        "--weights", required=weights_required, help="checkpoint (.pth) or, with --backend onnxruntime, an .onnx file"
    )
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch")
    p.add_argument(
        "--input-size",
        help="semantic: resize images to HxW for the model (default: the artifact's "
        "size policy; give the same size to compare torch with an export)",
    )


def _add_mask_threshold(p) -> None:
    p.add_argument(
        "--mask-threshold",
        type=float,
        help="instances: mask probability threshold (default: the model's, 0.5 for the released ones)",
    )


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="run a model on images")
    _add_model_args(p, weights_required=True)
    p.add_argument("--score-threshold", type=float, default=0.05, help="instances: minimum score")
    p.add_argument("--top-k", type=int, default=100, help="instances: at most K detections per image")
    _add_mask_threshold(p)
    p.add_argument("--json", dest="json_out", help="instances: write detections (COCO results format with file names)")
    p.add_argument("--mask-dir", help="semantic: write one uint8 class-id PNG per image here")
    p.add_argument("--overlay", help="write rendered overlays to this folder")
    p.add_argument("images", nargs="+", help="image files")


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model on a dataset")
    _add_model_args(p, weights_required=True)
    _add_mask_threshold(p)
    p.add_argument("--annotations", help="instances: COCO annotation JSON")
    p.add_argument("--images", help="image folder")
    p.add_argument("--labels", help="semantic: label PNG folder")
    p.add_argument(
        "--layout",
        choices=["plain", "cityscapes", "camvid", "binary"],
        default="plain",
        help="semantic: label layout (binary: 0 background, any other value foreground)",
    )
    p.add_argument("--json", dest="json_out", help="write the figures to this JSON file")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train or fine-tune a model")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", help="start from this checkpoint")
    p.add_argument("--annotations", help="instances: COCO annotation JSON")
    p.add_argument("--images", help="image folder")
    p.add_argument("--labels", help="semantic: label PNG folder")
    p.add_argument(
        "--layout",
        choices=["plain", "cityscapes", "camvid", "binary"],
        default="plain",
        help="semantic: label layout (binary: 0 background, any other value foreground)",
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--iters", type=int, help="stop after this many iterations")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float)
    p.add_argument("--input-size", help="HxW training input size")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--optimizer",
        choices=["sgd", "adam"],
        default="sgd",
        help="instances: sgd (the published recipe) or adam (tiny models from scratch); semantic: sgd",
    )
    p.add_argument("--checkpoint-every", type=int, default=0, help="also save the checkpoint every N iterations")
    p.add_argument(
        "--aspect-ratios",
        help="instances (YOLACT): anchor aspect ratios w/h, comma-separated "
        "(default: the --weights checkpoint's, else the configuration's 1,0.5,2); recorded in the checkpoint",
    )
    p.add_argument(
        "--square-anchors",
        choices=["on", "off"],
        help="instances (YOLACT): 'on' (the released models) makes every anchor square whatever its "
        "ratio; 'off' gives ratio-shaped anchors (tall ones for pedestrians); recorded in the checkpoint",
    )
    p.add_argument(
        "--mask-targets",
        choices=["hard", "soft"],
        help="instances (YOLACT): mask-loss targets at prototype size, 'hard' (official: bilinear, "
        "> 0.5) or 'soft' (each cell's covered fraction; better for objects a few cells wide); "
        "default: the --weights checkpoint's, else hard",
    )
    p.add_argument(
        "--proto-skip",
        choices=["on", "off"],
        help="instances (YOLACT): 'on' adds a 3x3 conv of the stride-4 backbone features to the "
        "prototypes (sharper masks of small objects; not in the published models, starts at zero "
        "so fine-tuning begins from the same outputs); default: the --weights checkpoint's, else off",
    )
    p.add_argument(
        "--mask-threshold",
        type=float,
        help="instances (YOLACT): mask probability threshold recorded in the checkpoint and its "
        "exports (default: the --weights checkpoint's, else 0.5)",
    )
    p.add_argument(
        "--class-weights",
        choices=["none", "balanced", "balanced-sqrt"],
        default="none",
        help="semantic: 'balanced' weights each class's loss by median frequency / its frequency; "
        "'balanced-sqrt' by the square root of that (milder)",
    )
    p.add_argument(
        "--val-images",
        help="validation image folder, scored every --eval-every iterations (the best checkpoint is kept in --out)",
    )
    p.add_argument("--val-labels", help="semantic: validation label folder (same --layout)")
    p.add_argument(
        "--val-annotations",
        help="instances: validation COCO JSON (images in --val-images); mask AP50 "
        "per class every --eval-every iterations, the best checkpoint kept in --out",
    )
    p.add_argument("--eval-every", type=int, default=0, help="validate every N iterations (and at the end)")
    p.add_argument(
        "--resume",
        help="continue from the <out>.last.pth an earlier run with the same settings wrote "
        "(optimiser, schedule and data order carry on exactly)",
    )
    p.add_argument(
        "--stop-at",
        type=int,
        help="stop at this iteration and write <out>.last.pth (the schedule still "
        "runs to --iters): resume later with --resume",
    )
    p.add_argument("--warmup-iters", type=int, default=0, help="semantic: linear learning-rate warm-up steps")
    p.add_argument("--scale-range", help="semantic: random rescale range LOW,HIGH before cropping (default 0.75,1.25)")
    p.add_argument(
        "--jitter",
        choices=["basic", "color"],
        default="basic",
        help="semantic: photometric augmentation: brightness/contrast, or also saturation and hue",
    )
    p.add_argument("--weight-decay", type=float, help="semantic: SGD weight decay (default 1e-4)")
    p.add_argument(
        "--backbone-init",
        choices=["imagenet", "none"],
        default="imagenet",
        help="semantic: ImageNet weights for a backbone that has them installed (EfficientNet-Lite0) "
        "when no --weights are given",
    )
    p.add_argument("--threads", type=int, help="torch threads while training (1 is fastest on a busy 2-core machine)")
    p.add_argument("--out", required=True, help="checkpoint path to write")


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX or TensorRT")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", help="checkpoint; random initialisation if omitted (for tests)")
    p.add_argument(
        "--format",
        choices=["onnx", "tensorrt", "triton-repo"],
        default="onnx",
        help="triton-repo: a Triton model repository in --out (from --weights if it is already an .onnx/.engine)",
    )
    p.add_argument("--triton-max-batch", type=int, default=8, help="triton-repo: dynamic batching limit")
    p.add_argument("--triton-queue-delay-us", type=int, default=100, help="triton-repo: dynamic batching delay")
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--int8", action="store_true")
    p.add_argument("--calibration", help="INT8 calibration source (video file or image folder)")
    p.add_argument("--input-size", help="HxW export size")
    p.add_argument("--dynamic", action="store_true", help="dynamic height and width")
    p.add_argument(
        "--dynamic-batch",
        action="store_true",
        help="dynamic batch axis, so one model call can serve frames of several cameras ([batching] max_batch)",
    )
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--num-classes", type=int)
    p.add_argument("--out", required=True)


def _add_verify(sub) -> None:
    p = sub.add_parser("verify", help="compare an exported artifact with the torch model")
    p.add_argument("artifact")
    p.add_argument("--model", required=True)
    p.add_argument("--weights")
    p.add_argument("--input-size", help="HxW to test at (default: differs from the export size where dynamic)")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="measure speed")
    bsub = p.add_subparsers(dest="bench_kind", required=True, parser_class=_Parser)
    pp = bsub.add_parser("pipeline", help="end-to-end fps and latency of a pipeline")
    pp.add_argument("--config")
    pp.add_argument("--source", default=None)
    pp.add_argument("--pipeline", default=None)
    pp.add_argument("--max-frames", type=int, default=None)
    pp.add_argument("--stages", type=int, default=4, help="runtime bench: number of no-op stages")
    pp.add_argument("--json", dest="json_out")
    pp.add_argument("--plot", help="write the per-stage latency chart (PNG)")
    pp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    pm = bsub.add_parser("model", help="model-only latency")
    pm.add_argument("--model", required=True)
    pm.add_argument(
        "--weights",
        help="torch checkpoint (.pth; random weights if omitted), exported for each backend "
        "here; or an exported artifact (.onnx, .engine) to time as it is",
    )
    pm.add_argument("--backend", choices=["torch", "onnxruntime", "tensorrt"], default="onnxruntime")
    pm.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    pm.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32")
    pm.add_argument("--input-size")
    pm.add_argument("--iters", type=int, default=20)
    pm.add_argument("--json", dest="json_out")
    pm.add_argument("--plot", help="write a latency-per-iteration chart (PNG)")
    pc = bsub.add_parser("compare", help="one table across backends and precisions for a model, measured in one run")
    pc.add_argument("--model", required=True)
    pc.add_argument("--weights")
    pc.add_argument("--backends", default="torch,onnxruntime", help="comma-separated: torch,onnxruntime,tensorrt")
    pc.add_argument("--precisions", default="fp32", help="comma-separated: fp32,fp16,int8")
    pc.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    pc.add_argument("--input-size")
    pc.add_argument("--iters", type=int, default=20)
    pc.add_argument("--json", dest="json_out")
    pc.add_argument("--plot", help="write a bar chart (PNG)")


#: ``generate`` defaults by kind: count, width, height.
_GENERATE_DEFAULTS = {
    "images": (100, 1280, 720),
    "video": (100, 1280, 720),
    "slices": (40, 256, 256),
    "tiles": (1, 3000, 2000),
}


def _add_generate(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="generate synthetic road scenes with ground truth (images or a video clip), "
        "or measurement data with known areas and volumes (slices, tiles)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--kind",
        choices=list(_GENERATE_DEFAULTS),
        default="images",
        help="images/video: road scenes; slices: a phantom slice stack for the medical pipeline; tiles: "
        "a large map for the satellite pipeline (both with ground_truth.json and a reference model)",
    )
    p.add_argument("--count", type=int, help="images, frames of the clip, or slices (default 100; slices 40)")
    p.add_argument("--width", type=int, help="pixels (default 1280; slices 256, tiles 3000)")
    p.add_argument("--height", type=int, help="pixels (default 720; slices 256, tiles 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=30.0)


def _add_fleet(sub) -> None:
    p = sub.add_parser("fleet", help="run many recordings through a pipeline on a Ray cluster, one task per recording")
    p.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="GLOB",
        help="recordings: files, quoted globs ('drives/*.mp4') or folders; repeat for several",
    )
    p.add_argument(
        "--output",
        required=True,
        help="folder: <stem>.<ext> per output of the config, <stem>.done.json, fleet_summary.json",
    )
    p.add_argument("--config", help="TOML config (default: ./config.toml if present, else the built-in defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--address", help="Ray cluster to join (auto, ray://host:10001); default: a local one on 127.0.0.1")
    p.add_argument("--workers", type=int, help="worker actors (default: the cluster's CPUs)")
    p.add_argument("--retries", type=int, default=1, help="attempts after the first for a failed recording")
    p.add_argument("--no-progress", action="store_true", help="no progress line")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="generate a clip and run the default pipeline on it (what `make demo` runs)")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--frames", type=int, default=90)


def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help="convert a dataset's labels into a format the trainers read")
    csub = p.add_subparsers(dest="convert_kind", required=True, parser_class=_Parser)
    pc = csub.add_parser(
        "camvid-instances",
        help="COCO instances (car, person, cyclist) from CamVid class-id labels: "
        "each 8-connected component of Car, Pedestrian or Bicyclist pixels is one instance",
    )
    pc.add_argument("--images", required=True, help="CamVid image folder (the JSON names images by basename)")
    pc.add_argument(
        "--labels", required=True, help="class-id label PNG folder, one per image with its name (e.g. trainannot/)"
    )
    pc.add_argument("--out", required=True, help="COCO JSON file to write")
    pc.add_argument("--min-area", type=int, default=50, help="smallest component kept, pixels")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="segstream", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (
        _add_run,
        _add_predict,
        _add_eval,
        _add_export,
        _add_verify,
        _add_bench,
        _add_train,
        _add_generate,
        _add_demo,
        _add_fleet,
        _add_convert,
    ):
        add(sub)
    return parser


def _version() -> str:
    from segstream import __version__

    return f"segstream {__version__}"


def _options(cls, args: argparse.Namespace):
    """The command's typed options (a dataclass of ``segstream.models.options``) from the parsed
    arguments: the one place a Namespace is read for the family commands."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    if "images" in values and isinstance(values["images"], list):
        values["images"] = tuple(values["images"])
    return cls(**values)


def _given(args: argparse.Namespace, flags: dict[str, object]) -> list[str]:
    """The flags of ``flags`` (flag -> value, None or False when not given) given on the command line."""
    return [flag for flag, v in flags.items() if v is not None and v is not False]


def _check_family_options(cmd: str, args: argparse.Namespace, family) -> None:
    """Refuses options that do not apply to the model's family (``ModelFamily.options``)."""
    model = args.model
    if cmd in ("predict", "eval"):
        if args.input_size and not family.accepts(f"{cmd} --input-size"):
            raise ConfigError(
                f"--input-size is for semantic models; {model} runs at the size it was exported or configured with"
            )
        if args.mask_threshold is not None:
            if not family.accepts(f"{cmd} --mask-threshold"):
                raise ConfigError(f"--mask-threshold is for instance models (YOLACT, Mask R-CNN), not {model}")
            if not 0 < args.mask_threshold < 1:
                raise ConfigError(f"--mask-threshold must be between 0 and 1, got {args.mask_threshold}")
    if cmd != "train":
        return
    if args.class_weights != "none" and not family.accepts("train --class-weights"):
        raise ConfigError(f"--class-weights is for semantic models, not {model}")
    semantic_only = [
        flag
        for flag in _given(
            args,
            {
                "--val-labels": args.val_labels,
                "--scale-range": args.scale_range,
                "--jitter": args.jitter != "basic" or None,
                "--warmup-iters": args.warmup_iters or None,
                "--weight-decay": args.weight_decay,
            },
        )
        if not family.accepts(f"train {flag}")
    ]
    if semantic_only:
        raise ConfigError(f"{'/'.join(semantic_only)}: semantic training only, not {model}")
    if args.val_annotations and not family.accepts("train --val-annotations"):
        raise ConfigError(
            f"--val-annotations is for instance models; {model} validates on --val-images and --val-labels"
        )
    resumable = _given(
        args,
        {
            "--resume": args.resume or None,
            "--stop-at": args.stop_at or None,
            "--val-images": args.val_images or None,
            "--eval-every": args.eval_every or None,
        },
    )
    if any(not family.accepts(f"train {flag}") for flag in resumable):
        raise ConfigError(f"--resume/--stop-at/validation are for semantic and YOLACT training, not {model}")
    yolact_only = [
        flag
        for flag in _given(
            args,
            {
                "--aspect-ratios": args.aspect_ratios,
                "--square-anchors": args.square_anchors,
                "--mask-targets": args.mask_targets,
                "--proto-skip": args.proto_skip,
                "--mask-threshold": args.mask_threshold,
            },
        )
        if not family.accepts(f"train {flag}")
    ]
    if yolact_only:
        raise ConfigError(
            f"{'/'.join(yolact_only)} {'is' if len(yolact_only) == 1 else 'are'} for YOLACT models, not {model}"
        )


def _run_options(args: argparse.Namespace):
    """``run`` and ``bench pipeline``'s arguments as the app's typed options."""
    from segstream.pipelines.apps.app import RunOptions

    return RunOptions(
        config=args.config,
        overrides=tuple(args.set or ()),
        source=(args.source,) if isinstance(args.source, str) else tuple(args.source or ()),
        outputs=tuple(getattr(args, "output", None) or ()),
        pipeline=args.pipeline,
        max_frames=args.max_frames,
        quiet=getattr(args, "quiet", False),
        metrics_json=getattr(args, "metrics_json", None),
        debug=args.debug,
    )


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "run":
        from segstream.pipelines.apps.app import run_command

        return run_command(_run_options(args))
    if cmd == "fleet":
        from segstream.pipelines.apps.config import load_config
        from segstream.pipelines.apps.fleet import SUMMARY_NAME, run_fleet

        config = load_config(args.config, args.set)
        report = run_fleet(
            args.source,
            args.output,
            config,
            address=args.address,
            workers=args.workers,
            retries=args.retries,
            progress=config.runtime.progress and not args.no_progress,
        )
        for r in report.recordings:
            if r.status == "failed":
                print(f"segstream: error: {r.source}: {r.error}", file=sys.stderr)
        print(
            f"fleet: {report.count('done')} done, {report.count('skipped')} skipped, {report.count('failed')} failed, "
            f"{report.frames} frames in {report.wall_s:.1f} s; {os.path.join(report.output_dir, SUMMARY_NAME)}"
        )
        return report.exit_code
    if cmd == "demo":
        from segstream.demo import demo_command

        return demo_command(out=args.out, frames=args.frames)
    if cmd == "bench" and args.bench_kind == "model":
        from segstream.export.bench_cli import bench_model_command

        return bench_model_command(
            model=args.model,
            weights=args.weights,
            backend=args.backend,
            device=args.device,
            precision=args.precision,
            input_size=args.input_size,
            iters=args.iters,
            json_out=args.json_out,
            plot=args.plot,
        )
    if cmd == "bench" and args.bench_kind == "compare":
        from segstream.export.bench_cli import bench_compare_command

        return bench_compare_command(
            model=args.model,
            weights=args.weights,
            backends=args.backends,
            precisions=args.precisions,
            device=args.device,
            input_size=args.input_size,
            iters=args.iters,
            json_out=args.json_out,
            plot=args.plot,
        )
    if cmd == "bench":
        from segstream.pipelines.apps.app import BenchPipelineOptions, bench_command

        return bench_command(
            BenchPipelineOptions(run=_run_options(args), stages=args.stages, json_out=args.json_out, plot=args.plot)
        )
    if cmd == "generate":
        from segstream.models.synthetic.commands import GenerateOptions, generate, generate_measured

        count, width, height = _GENERATE_DEFAULTS[args.kind]
        opts = GenerateOptions(
            out=args.out,
            kind=args.kind,
            count=count if args.count is None else args.count,
            width=width if args.width is None else args.width,
            height=height if args.height is None else args.height,
            seed=args.seed,
            fps=args.fps,
        )
        if opts.count < 1 or opts.width < 16 or opts.height < 16 or opts.fps <= 0:
            raise ConfigError("generate: --count must be >= 1, --width/--height >= 16 and --fps > 0")
        if opts.kind in ("slices", "tiles"):
            measured = generate_measured(opts)
            what = f"{measured.count} slices" if opts.kind == "slices" else f"a map of {measured.count} regions"
            print(f"generate: wrote {what}, their labels, a reference model and {measured.ground_truth}")
            print(f"generate: measure them with\n  {measured.command}\nand compare with the ground truth")
            return EXIT_OK
        result = generate(opts)
        print(f"generate: wrote {result.count} {'frames' if opts.kind == 'video' else 'images'} to {result.main_file}")
        return EXIT_OK
    if cmd == "convert" and args.convert_kind == "camvid-instances":
        from segstream.models.datasets.camvid_instances import convert_camvid_instances

        result = convert_camvid_instances(args.images, args.labels, min_area=args.min_area)
        result.write_json(args.out)
        per_class = ", ".join(f"{name} {n}" for name, n in result.counts.items())
        print(
            f"convert: wrote {args.out}: {len(result.coco['images'])} images, "
            f"{len(result.coco['annotations'])} instances ({per_class})"
        )
        return EXIT_OK
    if cmd == "export" and args.dynamic_batch and args.format == "tensorrt":
        raise ConfigError(
            "--dynamic-batch with --format tensorrt: the engine's optimisation profile pins the batch to 1 for "
            "now; export ONNX with --dynamic-batch and run it with ONNX Runtime (CUDA/TensorRT providers) or Triton"
        )
    if cmd == "export" and args.format == "triton-repo":
        return _export_triton_repo(args)
    if cmd in ("predict", "eval", "train", "export", "verify"):
        from segstream.models.options import OPTIONS_BY_COMMAND
        from segstream.models.registry import family_of

        family = family_of(args.model)
        _check_family_options(cmd, args, family)
        command = family.command({"eval": "evaluate"}.get(cmd, cmd))
        return int(command(_options(OPTIONS_BY_COMMAND[cmd], args)) or 0)
    raise AssertionError(f"unhandled command {cmd}")


def _export_triton_repo(args: argparse.Namespace) -> int:
    """``export --format triton-repo``: an artifact (given, or exported to ONNX first) written as a
    Triton model repository named after the model."""
    import tempfile

    from segstream.export.triton_repo import write_triton_repo

    weights = args.weights or ""
    with tempfile.TemporaryDirectory() as tmp:
        if weights.lower().endswith((".onnx", ".engine", ".plan")):
            artifact = weights
        else:
            from segstream.models.options import OPTIONS_BY_COMMAND
            from segstream.models.registry import family_of

            family = family_of(args.model)
            artifact = os.path.join(tmp, f"{args.model}.onnx")
            onnx_args = argparse.Namespace(**{**vars(args), "format": "onnx", "out": artifact})
            _check_family_options("export", onnx_args, family)
            rc = int(family.command("export")(_options(OPTIONS_BY_COMMAND["export"], onnx_args)) or 0)
            if rc:
                return rc
        folder = write_triton_repo(
            artifact,
            args.out,
            args.model,
            max_queue_delay_us=args.triton_queue_delay_us,
            max_batch_size=args.triton_max_batch,
        )
    print(
        f"wrote the Triton model {folder} (serve the repository {args.out}; clients use triton://HOST:8001/{args.model})"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return _dispatch(args)
    except SegstreamError as exc:
        if args.debug:
            raise
        print(f"segstream: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("segstream: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
