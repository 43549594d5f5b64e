"""Two-stage vs one-stage on this CPU (a script, not a test): Mask R-CNN R50-FPN (v1, v2) and
YOLACT (ResNet-50, MobileNetV3) at the same network input, torch eager and ONNX Runtime, random
weights (speed only), through ``export.bench`` (the code behind ``segstream bench model``).

    .venv/bin/python bench/maskrcnn.py [--size 550] [--iters 3] [--threads 2] [--models a,b,...]

Mask R-CNN runs with a zero score floor so that 100 detections reach its mask head (random
weights would otherwise give none); YOLACT's graph ends before Fast NMS and mask assembly,
Mask R-CNN's after NMS and the 28x28 mask head. The host-side post-processing of each, for
100 detections on a 1280x720 frame, is timed separately. Prints a Markdown table and JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODELS = ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "yolact_resnet50", "yolact_mobilenetv3")


def maskrcnn_paste_ms(iters: int) -> float:
    """Median ms to scale and paste 100 detections (28x28 masks, boxes 20-400 px) into 720x1280."""
    from segstream.pipelines.tasks.maskrcnn import MaskRCNNFrameInfo, MaskRCNNPostprocess

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (100, 2))
    wh = rng.uniform(20, 400, (100, 2))
    outputs = {
        "boxes": np.concatenate([xy, xy + wh], 1).astype(np.float32),
        "labels": rng.integers(1, 91, 100),
        "scores": np.sort(rng.uniform(0.05, 1, 100))[::-1].astype(np.float32),
        "mask_probs": rng.uniform(0, 1, (100, 28, 28)).astype(np.float32),
    }
    post = MaskRCNNPostprocess(tuple(f"c{i}" for i in range(90)))
    info = MaskRCNNFrameInfo(size_hw=(720, 1280), input_size_hw=(309, 550))
    times = []
    for _ in range(iters + 1):
        t = time.perf_counter()
        post(outputs, info)
        times.append((time.perf_counter() - t) * 1e3)
    return round(float(np.median(times[1:])), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=550, help="square network input (YOLACT's is fixed at 550)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()

    import torch

    from segstream.export.bench import bench_model, subject_for

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows = []
    for model in args.models.split(","):
        torch.manual_seed(0)
        subject = subject_for(model, None, (args.size, args.size))
        with tempfile.TemporaryDirectory(prefix="bench-maskrcnn-") as d:
            t = time.perf_counter()
            onnx_path = subject.export(os.path.join(d, "model.onnx"), subject.size_hw)
            export_s = time.perf_counter() - t
            row = {
                "model": model,
                "input": list(subject.size_hw),
                "export_s": round(export_s, 1),
                "params_m": round(sum(p.numel() for p in subject.module.parameters()) / 1e6, 1),
            }
            for backend in ("torch", "onnxruntime"):
                r = bench_model(
                    model=model, backend=backend, iters=args.iters, warmup=1, subject=subject, onnx_path=onnx_path
                )
                row[backend] = r["latency_ms"]["p50"]
                print(
                    f"{model} {backend}: p50 {r['latency_ms']['p50']:.0f} ms "
                    f"(samples {r['samples_ms']}), load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        rows.append(row)
    paste = maskrcnn_paste_ms(5)
    print(f"Mask R-CNN post-processing (100 detections, 1280x720): {paste} ms")
    print("\n| model @ input | params | torch eager | ONNX Runtime |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} @ {r['input'][0]}x{r['input'][1]} | {r['params_m']} M | {r['torch']:.0f} ms | "
            f"{r['onnxruntime']:.0f} ms |"
        )
    print(
        json.dumps(
            {"rows": rows, "maskrcnn_paste_ms": paste, "threads": args.threads, "loadavg": os.getloadavg()}, indent=1
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
