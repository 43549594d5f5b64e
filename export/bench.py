"""Model-only latency on each backend: ``segstream bench model`` and ``segstream bench compare``.

The same model (random-initialised, or from ``--weights``) runs through the same ``Backend``
interface the pipelines use: ``TorchBackend`` (eager), ``OnnxRuntimeBackend`` on an ONNX file
exported for the run, or ``TensorRTBackend`` on an engine built from it. Warm-up iterations are
discarded; the rest give p50/p95/p99 and throughput. Inputs are fixed random images (seeded).

Given an exported artifact as ``weights`` (.onnx; .engine/.plan with TensorRT), ``bench model``
times the runtime backend on that file instead: its metadata names the model and task, its graph
(or, for a dynamic one, the family's runtime pre-processing of a 720p frame) the input size.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from segstream.stream.errors import BackendError, ConfigError, ModelError


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
    """Builds the torch module and an exporter for a model name of any family (its registry
    entry's ``bench_subject``)."""
    from segstream.models.registry import family_of

    family = family_of(model)
    build = family.bench_builder()
    if build is None:
        raise ConfigError(f"bench: no benchmark for the {family.name!r} family yet")
    return build(model, weights, size_hw)


def _backend(subject: BenchSubject, backend: str, device: str, precision: str, workdir: str, onnx_path: str | None):
    if backend == "torch":
        from segstream.models.torch_backend import TorchBackend

        return TorchBackend(
            subject.module,
            input_names=[subject.input_name],
            output_names=subject.output_names,
            device=device,
            precision=precision,
            channels_last=True,
        )
    if precision == "int8" and backend != "tensorrt":
        raise ConfigError(
            "int8 is measured with --backend tensorrt only (ONNX Runtime int8 on this CPU loses accuracy "
            "and gains nothing; see README)"
        )
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


#: What ``bench model`` takes as an exported artifact rather than a torch checkpoint.
ARTIFACT_SUFFIXES = (".onnx", ".engine", ".plan")
#: The frame a dynamic-size artifact is timed on when no ``--input-size`` is given (H, W).
DEFAULT_FRAME_HW = (720, 1280)


def is_artifact(path: str | None) -> bool:
    """True for an exported artifact's file name (ONNX, TensorRT engine)."""
    return bool(path) and path.lower().endswith(ARTIFACT_SUFFIXES)


def _time(be, feeds: dict, warmup: int, iters: int) -> list[float]:
    """Milliseconds per ``be.run(feeds)``, after ``warmup`` discarded runs."""
    for _ in range(warmup):
        be.run(feeds)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        be.run(feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _figures(times: list[float], **fields) -> dict:
    arr = np.asarray(times)
    p50, p95, p99 = (round(float(v), 3) for v in np.percentile(arr, [50, 95, 99]))
    return {
        **fields,
        "latency_ms": {"p50": p50, "p95": p95, "p99": p99},
        "throughput_fps": round(1000.0 / float(arr.mean()), 2),
        "samples_ms": [round(float(t), 3) for t in times],
    }


def _random_feeds(name: str, size_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {name: rng.standard_normal((1, 3, size_hw[0], size_hw[1])).astype(np.float32)}


def bench_model(
    *,
    model: str,
    weights: str | None = None,
    backend: str = "onnxruntime",
    device: str = "cpu",
    precision: str = "fp32",
    input_size_hw: tuple[int, int] | None = None,
    iters: int = 20,
    warmup: int = 3,
    subject: BenchSubject | None = None,
    onnx_path: str | None = None,
) -> dict:
    """Latency of one model on one backend.

    Args:
        weights: a torch checkpoint (None: random weights), exported and built for ``backend``
            here; or an exported artifact (``is_artifact``), timed as it is (``bench_artifact``).

    Returns:
        {"model", "backend", "device", "precision", "input_size", "iters",
         "latency_ms": {"p50", "p95", "p99"}, "throughput_fps", "runtime_device", "samples_ms"}.
    """
    if iters < 1 or warmup < 0:
        raise ConfigError(f"--iters must be >= 1, got {iters}")
    if subject is None and is_artifact(weights):
        return bench_artifact(
            weights,
            model=model,
            backend=backend,
            device=device,
            precision=precision,
            input_size_hw=input_size_hw,
            iters=iters,
            warmup=warmup,
        )
    subject = subject or subject_for(model, weights, input_size_hw)
    h, w = subject.size_hw
    feeds = _random_feeds(subject.input_name, (h, w))
    with tempfile.TemporaryDirectory(prefix="segstream-bench-") as workdir:
        be = _backend(subject, backend, device, precision, workdir, onnx_path)
        try:
            times = _time(be, feeds, warmup, iters)
        finally:
            be.close()
    return _figures(
        times,
        model=model,
        backend=backend,
        device=device,
        precision=precision,
        input_size=[h, w],
        iters=iters,
        runtime_device=getattr(be, "device", device),
    )


def _artifact_backend(path: str, backend: str, device: str, precision: str, workdir: str):
    """The runtime backend timing an artifact: ONNX Runtime on an .onnx, TensorRT on an engine
    or on one built here from an .onnx at ``precision``."""
    engine = not path.lower().endswith(".onnx")
    if backend == "torch":
        raise ConfigError(
            f"{path} is an exported artifact; --backend torch times the torch checkpoint (.pth): "
            "pass that, or time the artifact with --backend onnxruntime or tensorrt"
        )
    if backend == "onnxruntime":
        if engine:
            raise ConfigError(f"{path} is a TensorRT engine; time it with --backend tensorrt")
        if precision != "fp32":
            raise ConfigError("--backend onnxruntime runs the fp32 graph; use --backend tensorrt --precision fp16")
        from segstream.stream.backends import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, providers=["cuda"] if device == "cuda" else ["cpu"], allow_fallback=False)
    if backend != "tensorrt":
        raise ConfigError(f"unknown backend {backend!r}")
    from segstream.stream.backends.tensorrt import TensorRTBackend

    if engine:
        if precision != "fp32":
            raise ConfigError(f"{path}: an engine runs at the precision it was built with; drop --precision")
        return TensorRTBackend(path)
    from segstream.export.tensorrt import build_engine

    built = os.path.join(workdir, f"model_{precision}.engine")
    build_engine(onnx_path=path, out_path=built, fp16=precision == "fp16", int8=precision == "int8")
    return TensorRTBackend(built)


def _artifact_input(be, size_hw: tuple[int, int] | None) -> tuple[str, tuple[int, int]]:
    """The artifact's input name and the (H, W) to time it at: its fixed size, else ``size_hw``,
    else what its family's runtime pre-processing makes of a ``DEFAULT_FRAME_HW`` frame."""
    from segstream.pipelines.tasks.families import family_of_model

    if len(be.inputs) != 1:
        raise ModelError(f"{be.path}: expected one input image, found {[t.name for t in be.inputs]}")
    spec = be.inputs[0]
    fixed = tuple(spec.shape[2:]) if all(isinstance(d, int) and d > 0 for d in spec.shape[2:]) else None
    if fixed is not None:
        if size_hw is not None and tuple(size_hw) != fixed:
            raise ConfigError(
                f"{be.path} was exported at {fixed[0]}x{fixed[1]}; got --input-size "
                f"{size_hw[0]}x{size_hw[1]} (leave it out, or export at that size)"
            )
        return spec.name, fixed
    if size_hw is not None:
        return spec.name, tuple(size_hw)
    meta = be.metadata
    family = None if meta is None else family_of_model(meta.model, meta.task)
    if family is None:
        raise ConfigError(f"{be.path} takes any input size and names no model family; give --input-size HxW")
    runner = family.runner_class()(be)
    feeds, _ = runner.preprocess(np.zeros((*DEFAULT_FRAME_HW, 3), np.uint8))
    return spec.name, tuple(int(d) for d in feeds[spec.name].shape[2:])


def bench_artifact(
    path: str,
    *,
    model: str | None = None,
    backend: str = "onnxruntime",
    device: str = "cpu",
    precision: str = "fp32",
    input_size_hw: tuple[int, int] | None = None,
    iters: int = 20,
    warmup: int = 3,
) -> dict:
    """Latency of an exported artifact on a runtime backend (what a pipeline would run).

    Args:
        path: .onnx (ONNX Runtime, or TensorRT building an engine from it) or .engine/.plan (TensorRT).
        model: the model name it should hold (checked against its metadata), or None.

    Returns:
        ``bench_model``'s figures, with "model" from the metadata and "artifact": ``path``.

    Raises:
        ConfigError: a backend or size the artifact cannot run with. ModelError: another model.
    """
    if iters < 1 or warmup < 0:
        raise ConfigError(f"--iters must be >= 1, got {iters}")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such file")
    with tempfile.TemporaryDirectory(prefix="segstream-bench-") as workdir:
        be = _artifact_backend(path, backend, device, precision, workdir)
        try:
            meta = be.metadata
            if model is not None and meta is not None and meta.model != model:
                raise ModelError(
                    f"{path}: exported from {meta.model!r}, but --model is {model!r}; pass --model {meta.model}"
                )
            name, (h, w) = _artifact_input(be, input_size_hw)
            times = _time(be, _random_feeds(name, (h, w)), warmup, iters)
        finally:
            be.close()
    built_here = backend == "tensorrt" and path.lower().endswith(".onnx")
    return _figures(
        times,
        model=meta.model if meta is not None else model,
        backend=backend,
        device=device,
        precision=precision if built_here or backend == "onnxruntime" else "as built",
        input_size=[h, w],
        iters=iters,
        runtime_device=getattr(be, "device", device),
        artifact=path,
    )


def bench_compare(
    *,
    model: str,
    weights: str | None,
    backends: list[str],
    precisions: list[str],
    device: str,
    input_size_hw: tuple[int, int] | None,
    iters: int,
) -> list[dict]:
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
                    rows.append(
                        bench_model(
                            model=model,
                            backend=backend,
                            device=device,
                            precision=precision,
                            iters=iters,
                            subject=subject,
                            onnx_path=onnx_path,
                        )
                    )
                except (BackendError, ConfigError) as exc:
                    rows.append(
                        {
                            "model": model,
                            "backend": backend,
                            "device": device,
                            "precision": precision,
                            "input_size": list(subject.size_hw),
                            "error": str(exc),
                        }
                    )
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
        cv2.putText(
            img,
            f"{r['backend']} {r['precision']}",
            (10, y + 24),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.55,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
        cv2.putText(
            img,
            f"{r['latency_ms']['p50']:.1f} ms",
            (left + max(bar, 1) + 6, y + 24),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    cv2.putText(
        img,
        "p50 latency, batch 1",
        (10, height - bottom // 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (90, 90, 90),
        1,
        cv2.LINE_AA,
    )
    if not cv2.imwrite(path, img):
        raise ConfigError(f"{path}: cannot write the plot")
    return path
