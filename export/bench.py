"""Model-only latency on each backend: ``segstream bench model`` and ``segstream bench compare``.

The same model (random-initialised, or from ``--weights``) runs through the same ``Backend``
interface the pipelines use: ``TorchBackend`` (eager), ``OnnxRuntimeBackend`` on an ONNX file
exported for the run, or ``TensorRTBackend`` on an engine built from it. Warm-up iterations are
discarded; the rest give p50/p95/p99 and throughput. Inputs are fixed random images (seeded).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from segstream.stream.errors import BackendError, ConfigError


@dataclass
class BenchSubject:
    """A model ready to benchmark.

    Attributes:
        module: eval-mode nn.Module, image -> the exported outputs.
        input_name / output_names: the exported graph's tensor names.
        size_hw: input size used.
        export: writes the ONNX artifact for ``size_hw`` to a path and returns it.
    """

    module: object
    input_name: str
    output_names: list[str]
    size_hw: tuple[int, int]
    export: object


def subject_for(model: str, weights: str | None, size_hw: tuple[int, int] | None) -> BenchSubject:
    """Builds the torch module and an exporter for a model name of any family."""
    from segstream.models.registry import family_of

    family = family_of(model)
    if family == "yolact":
        from segstream.export.yolact import export_yolact_onnx
        from segstream.models.yolact.checkpoint import load_yolact
        from segstream.models.yolact.config import get_config
        from segstream.models.yolact.model import YolactExportWrapper, build_yolact
        from segstream.pipelines.tasks.yolact import INPUT_NAME, OUTPUT_NAMES

        net = load_yolact(weights, model)[0] if weights else build_yolact(get_config(model))
        s = net.cfg.max_size
        if size_hw is not None and size_hw != (s, s):
            raise ConfigError(f"{model} runs at its configuration's fixed size {s}x{s}; got --input-size "
                              f"{size_hw[0]}x{size_hw[1]}")
        return BenchSubject(YolactExportWrapper(net.eval()).eval(), INPUT_NAME, list(OUTPUT_NAMES), (s, s),
                            lambda path, _size: export_yolact_onnx(net=net, out_path=path))
    if family == "semantic":
        from segstream.export.semantic import export_semantic
        from segstream.models.semantic.zoo import LogitsOnly, load_model

        loaded = load_model(model, weights, aux=False)
        size = size_hw or loaded.spec.size_policy.padded_size((360, 640))  # U-Net: a multiple of 2**depth
        return BenchSubject(LogitsOnly(loaded.model).eval(), "image", ["logits"], size,
                            lambda path, sz: export_semantic(model=model, weights=weights, out_path=path,
                                                             trace_size_hw=sz, dynamic_hw=False))
    if family == "maskrcnn":
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
        return BenchSubject(MaskRCNNGraph(loaded.model).eval(), INPUT_NAME, list(OUTPUT_NAMES), size,
                            lambda path, sz: export_maskrcnn_onnx(loaded=loaded, out_path=path, trace_size_hw=sz))
    raise ConfigError(f"bench: no benchmark for the {family!r} family yet")


def _backend(subject: BenchSubject, backend: str, device: str, precision: str, workdir: str, onnx_path: str | None):
    if backend == "torch":
        from segstream.models.torch_backend import TorchBackend

        return TorchBackend(subject.module, input_names=[subject.input_name], output_names=subject.output_names,
                            device=device, precision=precision, channels_last=True)
    if precision == "int8" and backend != "tensorrt":
        raise ConfigError("int8 is measured with --backend tensorrt only (ONNX Runtime int8 on this CPU loses accuracy "
                          "and gains nothing; see README)")
    path = onnx_path or subject.export(os.path.join(workdir, "model.onnx"), subject.size_hw)
    if backend == "onnxruntime":
        from segstream.stream.backends import OnnxRuntimeBackend

        if precision != "fp32":
            raise ConfigError("--backend onnxruntime runs the fp32 graph; use --backend tensorrt --precision fp16")
        providers = ["cuda"] if device == "cuda" else ["cpu"]
        return OnnxRuntimeBackend(path, providers=providers, allow_fallback=False)
    if backend == "tensorrt":
        from segstream.export.tensorrt import build_engine
        from segstream.stream.backends.tensorrt import TensorRTBackend

        engine = os.path.join(workdir, f"model_{precision}.engine")
        build_engine(onnx_path=path, out_path=engine, fp16=precision == "fp16", int8=precision == "int8")
        return TensorRTBackend(engine)
    raise ConfigError(f"unknown backend {backend!r}")


def bench_model(*, model: str, weights: str | None = None, backend: str = "onnxruntime", device: str = "cpu",
                precision: str = "fp32", input_size_hw: tuple[int, int] | None = None, iters: int = 20,
                warmup: int = 3, subject: BenchSubject | None = None, onnx_path: str | None = None) -> dict:
    """Latency of one model on one backend.

    Returns:
        {"model", "backend", "device", "precision", "input_size", "iters",
         "latency_ms": {"p50", "p95", "p99"}, "throughput_fps", "runtime_device"}.
    """
    if iters < 1 or warmup < 0:
        raise ConfigError(f"--iters must be >= 1, got {iters}")
    subject = subject or subject_for(model, weights, input_size_hw)
    h, w = subject.size_hw
    rng = np.random.default_rng(0)
    feeds = {subject.input_name: rng.standard_normal((1, 3, h, w)).astype(np.float32)}
    with tempfile.TemporaryDirectory(prefix="segstream-bench-") as workdir:
        be = _backend(subject, backend, device, precision, workdir, onnx_path)
        try:
            for _ in range(warmup):
                be.run(feeds)
            times = []
            for _ in range(iters):
                t0 = time.perf_counter()
                be.run(feeds)
                times.append((time.perf_counter() - t0) * 1e3)
        finally:
            be.close()
    arr = np.asarray(times)
    p50, p95, p99 = (round(float(v), 3) for v in np.percentile(arr, [50, 95, 99]))
    return {"model": model, "backend": backend, "device": device, "precision": precision,
            "input_size": [h, w], "iters": iters, "latency_ms": {"p50": p50, "p95": p95, "p99": p99},
            "throughput_fps": round(1000.0 / float(arr.mean()), 2), "runtime_device": getattr(be, "device", device),
            "samples_ms": [round(float(t), 3) for t in times]}


def bench_compare(*, model: str, weights: str | None, backends: list[str], precisions: list[str], device: str,
                  input_size_hw: tuple[int, int] | None, iters: int) -> list[dict]:
    """Every backend x precision for one model, in one run (one export shared). Combinations
    a backend cannot run are reported with an "error" field instead of figures."""
    subject = subject_for(model, weights, input_size_hw)
    rows = []
    with tempfile.TemporaryDirectory(prefix="segstream-compare-") as workdir:
        onnx_path = None
        if any(b != "torch" for b in backends):
            onnx_path = subject.export(os.path.join(workdir, "model.onnx"), subject.size_hw)
        for backend in backends:
            for precision in precisions:
                try:
                    rows.append(bench_model(model=model, backend=backend, device=device, precision=precision,
                                            iters=iters, subject=subject, onnx_path=onnx_path))
                except (BackendError, ConfigError) as exc:
                    rows.append({"model": model, "backend": backend, "device": device, "precision": precision,
                                 "input_size": list(subject.size_hw), "error": str(exc)})
    return rows


def plot_bars(rows: list[dict], path: str, title: str) -> str:
    """A bar chart of p50 latency per backend/precision (PNG, drawn with OpenCV)."""
    import cv2

    ok = [r for r in rows if "latency_ms" in r]
    if not ok:
        raise ConfigError("nothing to plot: every combination failed")
    width, height, left, bottom = 720, 120 + 60 * len(ok), 220, 40
    img = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(img, title, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    top = max(r["latency_ms"]["p50"] for r in ok)
    for i, r in enumerate(ok):
        y = 60 + 60 * i
        bar = int((width - left - 80) * r["latency_ms"]["p50"] / top)
        cv2.rectangle(img, (left, y), (left + max(bar, 1), y + 36), (180, 120, 40), -1)
        cv2.putText(img, f"{r['backend']} {r['precision']}", (10, y + 24), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1,
                    cv2.LINE_AA)
        cv2.putText(img, f"{r['latency_ms']['p50']:.1f} ms", (left + max(bar, 1) + 6, y + 24),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "p50 latency, batch 1", (10, height - bottom // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (90, 90, 90), 1, cv2.LINE_AA)
    if not cv2.imwrite(path, img):
        raise ConfigError(f"{path}: cannot write the plot")
    return path
