"""YOLACT CPU benchmark (a script, not a test): model-only latency with torch and ONNX Runtime
for yolact_resnet50 and yolact_mobilenetv3 at 550 (random weights), and the numpy
post-processing time per 1280x720 frame for up to 100 detections.

    .venv/bin/python bench/yolact.py [--threads 2] [--iters 10] [--models yolact_resnet50,yolact_mobilenetv3]

Prints one line per measurement (median and min in ms) and a JSON summary at the end.
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


def timed(fn, iters: int, warmup: int = 2) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(float(np.median(times)), 2), "min_ms": round(float(np.min(times)), 2)}


def network_outputs(rng, objects: int, worst_case: bool = False):
    """Outputs shaped like a 550 YOLACT's: peaked class scores near ``objects`` places, background
    elsewhere; ``worst_case``: noise scores so that nearly every prior is a candidate."""
    from segstream.pipelines.tasks.yolact import decode_boxes, make_priors

    priors = make_priors(
        [(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)], [[24], [48], [96], [192], [384]], [[1, 0.5, 2]] * 5, 550
    )
    p = len(priors)
    loc = rng.normal(0, 0.3, (p, 4)).astype(np.float32)
    logits = rng.normal(0, 1, (p, 81)).astype(np.float32)
    if not worst_case:
        logits[:, 0] += 6
        centres = rng.uniform(0.05, 0.95, (objects, 2))
        for c, cls in zip(centres, rng.integers(1, 81, objects)):
            near = np.flatnonzero(np.abs(priors[:, :2] - c).max(1) < 0.03)
            logits[near, cls] += rng.uniform(4, 10, len(near))
    scores = np.exp(logits - logits.max(1, keepdims=True))
    scores /= scores.sum(1, keepdims=True)
    return {
        "boxes": decode_boxes(loc, priors)[None],
        "scores": scores.astype(np.float32)[None],
        "coeffs": np.tanh(rng.normal(0, 1, (1, p, 32))).astype(np.float32),
        "protos": np.maximum(rng.normal(0, 1, (1, 138, 138, 32)), 0).astype(np.float32),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--models", default="yolact_resnet50,yolact_mobilenetv3")
    args = ap.parse_args()

    import torch

    from segstream.export.yolact import export_yolact_onnx
    from segstream.models.yolact.config import get_config
    from segstream.models.yolact.model import Yolact, YolactExportWrapper
    from segstream.pipelines.tasks.yolact import YolactFrameInfo, YolactPostprocess, YolactPreprocess
    from segstream.stream.backends import OnnxRuntimeBackend

    torch.set_num_threads(args.threads)
    summary: dict = {"threads": args.threads, "iters": args.iters, "torch": torch.__version__, "models": {}}
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (1, 3, 550, 550)).astype(np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            torch.manual_seed(0)
            net = Yolact(get_config(name)).eval()
            graph = YolactExportWrapper(net).eval()
            res = {}
            with torch.no_grad():
                res["torch_eager"] = timed(lambda: graph(x), args.iters)
                graph_cl = graph.to(memory_format=torch.channels_last)
                xc = x.contiguous(memory_format=torch.channels_last)
                res["torch_channels_last"] = timed(lambda: graph_cl(xc), args.iters)
            path = export_yolact_onnx(net=net, out_path=os.path.join(tmp, f"{name}.onnx"))
            ort = OnnxRuntimeBackend(path, intra_op_threads=args.threads)
            feeds = {"image": x.numpy()}
            res["onnxruntime"] = timed(lambda: ort.run(feeds), args.iters)
            summary["models"][name] = res
            for k, v in res.items():
                print(f"{name} 550x550 {k}: median {v['median_ms']} ms (min {v['min_ms']})", flush=True)

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    pre = YolactPreprocess()
    summary["preprocess_1280x720"] = timed(lambda: pre(frame), args.iters * 3)
    print(f"preprocess 1280x720 -> 550x550: median {summary['preprocess_1280x720']['median_ms']} ms", flush=True)
    post = YolactPostprocess()
    info = YolactFrameInfo((720, 1280), (550, 550))
    for label, outs in (
        ("realistic_120_objects", network_outputs(rng, 120)),
        ("worst_case_noise_scores", network_outputs(rng, 0, worst_case=True)),
    ):
        n = len(post(outs, info))
        r = timed(lambda: post(outs, info), args.iters * 3)
        r["detections"] = n
        boxes_only = YolactPostprocess(masks=False)
        r["nms_only_median_ms"] = timed(lambda: boxes_only(outs, info), args.iters * 3)["median_ms"]
        summary[f"postprocess_1280x720_{label}"] = r
        print(
            f"postprocess 1280x720 ({label}, {n} detections): median {r['median_ms']} ms "
            f"(Fast NMS alone {r['nms_only_median_ms']} ms)",
            flush=True,
        )
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
