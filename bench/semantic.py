"""Model-only latency of the MobileNet road-semantics models on CPU, torch and ONNX Runtime,
and the dense-CRF cost per frame.

Random weights, 19 classes, batch 1, fp32. Each figure is the median of ``--iters`` calls after
two warm-up calls; the ONNX file is exported with dynamic H/W once per model. Run it alone:
the machine's other load shows up in the figures.

    .venv/bin/python bench/semantic.py [--threads 2] [--iters 10] [--json out/bench_semantic.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODELS = ("deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "deeplabv3plus_mobilenet")
SIZES = ((360, 640), (512, 1024))
CRF_SIZES = ((256, 512), (512, 1024))


def median_ms(fn, iters: int) -> float:
    """Median wall time in ms of ``iters`` calls after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench_models(threads: int, iters: int, tmp: str) -> list[dict]:
    import torch

    from segstream.export.semantic import export_semantic
    from segstream.models.semantic.zoo import LogitsOnly, load_model
    from segstream.stream.backends.onnxruntime import OnnxRuntimeBackend

    torch.set_num_threads(threads)
    rows = []
    for name in MODELS:
        module = LogitsOnly(load_model(name, num_classes=19).model).eval()
        module_cl = LogitsOnly(load_model(name, num_classes=19).model).eval().to(memory_format=torch.channels_last)
        path = export_semantic(
            model=name,
            weights=None,
            out_path=os.path.join(tmp, f"{name}.onnx"),
            num_classes=19,
            trace_size_hw=SIZES[0],
            dynamic_hw=True,
        )
        ort = OnnxRuntimeBackend(path, intra_op_threads=threads)
        for h, w in SIZES:
            x = np.random.default_rng(0).normal(size=(1, 3, h, w)).astype(np.float32)
            xt = torch.from_numpy(x)
            xcl = xt.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                eager = median_ms(lambda: module(xt), iters)
                cl = median_ms(lambda: module_cl(xcl), iters)
            onnx_ms = median_ms(lambda: ort.run({"image": x}), iters)
            row = {
                "model": name,
                "size_hw": [h, w],
                "torch_ms": round(eager, 1),
                "torch_channels_last_ms": round(cl, 1),
                "onnxruntime_ms": round(onnx_ms, 1),
            }
            rows.append(row)
            print(
                f"{name:30s} {h:4d}x{w:<5d} torch {eager:7.1f} ms  channels_last {cl:7.1f} ms  "
                f"onnxruntime {onnx_ms:7.1f} ms",
                flush=True,
            )
        ort.close()
    return rows


def bench_crf(iters: int) -> list[dict]:
    import cv2

    from segstream.pipelines.tasks.crf import CrfParams, dense_crf
    from segstream.pipelines.tasks.road import softmax

    rows = []
    for h, w in CRF_SIZES:
        rng = np.random.default_rng(0)
        # a piecewise-smooth scene: 19 random blobs, probabilities from blurred one-hot labels
        labels = cv2.resize(
            rng.integers(0, 19, (h // 32, w // 32), dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
        )
        img = np.clip(
            labels[..., None] * np.array([13, 7, 11], np.float32) + rng.normal(0, 5, (h, w, 3)), 0, 255
        ).astype(np.uint8)
        logits = np.stack([cv2.GaussianBlur((labels == k).astype(np.float32) * 4, (0, 0), 6) for k in range(19)])
        probs = softmax(logits + rng.normal(0, 0.5, logits.shape).astype(np.float32))
        ms = median_ms(lambda: dense_crf(img, probs, CrfParams()), max(1, iters // 3))
        rows.append({"crf_size_hw": [h, w], "classes": 19, "iterations": CrfParams().iterations, "ms": round(ms, 1)})
        print(f"dense CRF (numpy), 19 classes, 5 iterations, {h}x{w}: {ms:7.1f} ms per frame", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--json", dest="json_out")
    p.add_argument("--skip-crf", action="store_true")
    args = p.parse_args(argv)
    # Shared machines: the load average says how far the figures are from an idle machine's.
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        doc = {
            "threads": args.threads,
            "iters": args.iters,
            "load_before": os.getloadavg()[0],
            "models": bench_models(args.threads, args.iters, tmp),
        }
    if not args.skip_crf:
        doc["crf"] = bench_crf(args.iters)
    doc["load_after"] = os.getloadavg()[0]
    print(f"load average after: {doc['load_after']:.2f}", flush=True)
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
