"""What batching frames of several cameras into one model call costs or saves, per frame, with
ONNX Runtime on this machine; and what the batch timeout costs a lone frame.

    .venv/bin/python bench/batching.py [--models yolact,deeplab] [--batches 1,2,4,8] [--rounds 12]
                                       [--threads 1] [--timeout-ms 10] [--json out.json]

The shipped checkpoints (``weights/yolact_tiny_synthetic.pth`` at its 512 px, the CamVid
``weights/deeplabv3plus_lite0_camvid.pth`` at 360x640, what its policy gives a 720p frame) are
exported with ``--dynamic-batch`` into a temporary folder and opened once with ONNX Runtime (CPU,
``--threads`` intra-op threads, no spinning: the pipeline's defaults). Inputs are random normal
images of the model's size. One round times one call at every batch size, the sizes alternating
so that all see the same machine load; the figure is the median over rounds of the call's time
divided by its batch size (ms per frame), and its ratio to batch 1.

The lone frame: a ``Batcher`` with ``max_batch`` 4 and ``--timeout-ms`` gets one frame and no
company; the time from ``submit`` to the start of its backend call is what the timeout costs it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from segstream.pipelines.tasks.batching import Batcher, BatchSettings  # noqa: E402
from segstream.stream.backends import OnnxRuntimeBackend  # noqa: E402


def export_models(folder: str, names: list[str]) -> dict[str, str]:
    """The shipped checkpoints exported with a dynamic batch axis: name -> .onnx path."""
    paths = {}
    if "yolact" in names:
        from segstream.export.yolact import export_yolact_onnx
        from segstream.models.yolact.checkpoint import load_yolact

        net, _ = load_yolact(os.path.join(ROOT, "weights", "yolact_tiny_synthetic.pth"), "yolact_tiny")
        paths["yolact"] = export_yolact_onnx(net=net, out_path=os.path.join(folder, "yolact.onnx"), dynamic_batch=True)
    if "deeplab" in names:
        from segstream.export.semantic import export_semantic

        paths["deeplab"] = export_semantic(
            model="deeplabv3plus_lite0",
            weights=os.path.join(ROOT, "weights", "deeplabv3plus_lite0_camvid.pth"),
            out_path=os.path.join(folder, "deeplab.onnx"),
            trace_size_hw=(360, 640),
            dynamic_hw=True,
            dynamic_batch=True,
        )
    return paths


def input_shape(backend: OnnxRuntimeBackend) -> tuple[int, ...]:
    """(1, 3, H, W): the artifact's fixed size, else 360x640."""
    dims = backend.inputs[0].shape
    h, w = (d if isinstance(d, int) else fallback for d, fallback in zip(dims[2:], (360, 640)))
    return (1, 3, h, w)


def per_frame_ms(backend: OnnxRuntimeBackend, batches: list[int], rounds: int) -> dict[int, dict]:
    name = backend.inputs[0].name
    rng = np.random.default_rng(0)
    frame = rng.normal(size=input_shape(backend)).astype(np.float32)
    feeds = {n: {name: np.ascontiguousarray(np.repeat(frame, n, 0))} for n in batches}
    for n in batches:  # warm-up: each batch size once (allocations, kernel choice)
        backend.run(feeds[n])
    samples: dict[int, list[float]] = {n: [] for n in batches}
    for r in range(rounds):
        order = batches if r % 2 == 0 else batches[::-1]
        for n in order:
            t0 = time.perf_counter()
            backend.run(feeds[n])
            samples[n].append((time.perf_counter() - t0) * 1e3 / n)
    base = float(np.median(samples[batches[0]]))
    return {
        n: {
            "ms_per_frame_p50": round(float(np.median(s)), 2),
            "ms_per_call_p50": round(float(np.median(s)) * n, 2),
            "vs_batch_1": round(float(np.median(s)) / base, 3),
        }
        for n, s in samples.items()
    }


def lone_frame_ms(backend: OnnxRuntimeBackend, timeout_ms: float, rounds: int) -> dict:
    """A lone frame through a Batcher (max_batch 4): how long it is held before its call starts
    (the timeout's cost, measured inside, so the model's own noise stays out) and its whole wall."""
    name = backend.inputs[0].name
    feeds = {name: np.random.default_rng(1).normal(size=input_shape(backend)).astype(np.float32)}
    started: list[float] = []

    def run(f):
        started.append(time.perf_counter())
        return backend.run(f)

    settings = BatchSettings(max_batch=4, timeout_ms=timeout_ms, max_age_ms=10 * timeout_ms + 1000)
    batcher = Batcher(run, settings)
    held, wall = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        batcher.submit(feeds, time.monotonic_ns())
        wall.append((time.perf_counter() - t0) * 1e3)
        held.append((started[-1] - t0) * 1e3)
    return {
        "timeout_ms": timeout_ms,
        "held_ms_p50": round(float(np.median(held)), 2),
        "held_ms_max": round(float(np.max(held)), 2),
        "wall_ms_p50": round(float(np.median(wall)), 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="yolact,deeplab")
    ap.add_argument("--batches", default="1,2,4,8")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--timeout-ms", type=float, default=10.0)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    names = args.models.split(",")
    batches = [int(v) for v in args.batches.split(",")]
    doc = {
        "cpus": os.cpu_count(),
        "load_before": [round(v, 2) for v in os.getloadavg()],
        "threads": args.threads,
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in export_models(tmp, names).items():
            backend = OnnxRuntimeBackend(path, intra_op_threads=args.threads, allow_spinning=False)
            shape = input_shape(backend)
            doc["models"][name] = {
                "input": f"{shape[2]}x{shape[3]}",
                "per_batch": per_frame_ms(backend, batches, args.rounds),
                "lone_frame": lone_frame_ms(backend, args.timeout_ms, args.rounds),
            }
            backend.close()
    doc["load_after"] = [round(v, 2) for v in os.getloadavg()]
    print(
        f"{doc['cpus']} CPUs, load {doc['load_before']} -> {doc['load_after']}, ONNX Runtime CPU, "
        f"{args.threads} intra-op thread(s)"
    )
    for name, m in doc["models"].items():
        print(f"{name} ({m['input']}):")
        for n, r in m["per_batch"].items():
            print(
                f"  batch {n}: {r['ms_per_frame_p50']:8.2f} ms/frame ({r['ms_per_call_p50']:.1f} ms/call), "
                f"{r['vs_batch_1']:.2f}x batch 1"
            )
        lone = m["lone_frame"]
        print(
            f"  lone frame, timeout {lone['timeout_ms']} ms: held {lone['held_ms_p50']:.2f} ms "
            f"(max {lone['held_ms_max']:.2f}) before its call, {lone['wall_ms_p50']:.1f} ms in all"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
