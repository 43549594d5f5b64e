"""Per-request cost of Triton over local ONNX Runtime, on the same artifact and the same frames.

    .venv/bin/python bench/triton.py [--models echo,yolact,deeplab] [--frames 60] [--json out.json]

Starts the local tritonserver of ``bench/triton_server.py`` (Python backend running the ONNX file
with ONNX Runtime, one intra-op thread) and opens the same file locally with ONNX Runtime (one
intra-op thread, no spinning). Frames are a generated 640x360 road clip, preprocessed once by
the model's own runner; only ``backend.run(feeds)`` is timed, local and remote alternating frame
by frame so both see the same machine load. Reports mean/p50/p95 ms of each and the difference
(the per-request overhead: gRPC, serialisation, the Python backend's shared-memory hop), plus
the server's own split of a request (queue, input, compute, output) from its statistics.
``echo`` is a one-op ONNX graph (Identity on 1x3x8x8) generated here: what a request costs
with nothing to compute and almost nothing to carry.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.triton_server import TritonServer, ensure_env, write_python_model_repo  # noqa: E402
from segstream.stream.backends import open_backend  # noqa: E402

ARTIFACTS = {
    "yolact": os.path.join(ROOT, "weights", "yolact_tiny_synthetic.onnx"),
    "deeplab": os.path.join(ROOT, "weights", "deeplab_tiny_synthetic.onnx"),
}


def echo_onnx(path: str) -> str:
    """A one-op ONNX graph (Identity, (1, 3, 8, 8) float32): the fixed cost of a request."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "echo", [x], [y])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    a = np.asarray(samples_s) * 1e3
    return {
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "n": int(a.size),
    }


def clip_feeds(model: str, backend, frames: int) -> list[dict[str, np.ndarray]]:
    if model == "echo":
        rng = np.random.default_rng(0)
        return [{"x": rng.random((1, 3, 8, 8), dtype=np.float32)} for _ in range(frames)]
    from segstream.models.synthetic.scene import SceneConfig, SceneSequence
    from segstream.pipelines.tasks.road import SemanticRunner
    from segstream.pipelines.tasks.yolact import YolactRunner

    runner = (YolactRunner if model == "yolact" else SemanticRunner)(backend)
    seq = SceneSequence(4, SceneConfig(width=640, height=360))
    return [runner.preprocess(seq.next_sample().image_bgr)[0] for _ in range(frames)]


def server_split_ms(client, model: str) -> dict[str, float]:
    """Mean ms per request of each phase the server records (since start, warm-up included)."""
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    inf = stats["inference_stats"]
    n = max(1, int(inf["success"].get("count", 0)))
    return {
        k: int(inf[k].get("ns", 0)) / n / 1e6
        for k in ("success", "queue", "compute_input", "compute_infer", "compute_output")
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="echo,yolact,deeplab")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repo", default=os.path.join(ROOT, "out", "triton-bench", "models"))
    ap.add_argument("--json")
    a = ap.parse_args()
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    import tritonclient.grpc as grpcclient

    artifacts = dict(ARTIFACTS, echo=echo_onnx(os.path.join(os.path.dirname(a.repo), "echo.onnx")))
    env = ensure_env()
    write_python_model_repo(a.repo, {m: artifacts[m] for m in models}, env=env, threads=1)
    report = {"cpus": os.cpu_count(), "load_before": os.getloadavg(), "frames": a.frames, "models": {}}
    with TritonServer(a.repo, env) as server:
        client = grpcclient.InferenceServerClient(server.url)
        for model in models:
            local = open_backend(
                artifacts[model], providers=["cpu"], intra_op_threads=1, inter_op_threads=1, allow_spinning=False
            )
            remote = open_backend(f"triton://{server.url}/{model}", timeout_s=60.0)
            feeds = clip_feeds(model, local, a.frames)
            for f in feeds[: a.warmup]:
                local.run(f)
                remote.run(f)
            times: dict[str, list[float]] = {"local": [], "triton": []}
            for i, f in enumerate(feeds):
                order = (("local", local), ("triton", remote)) if i % 2 == 0 else (("triton", remote), ("local", local))
                for label, backend in order:
                    t0 = time.perf_counter()
                    backend.run(f)
                    times[label].append(time.perf_counter() - t0)
            loc, tri = summary_ms(times["local"]), summary_ms(times["triton"])
            out_mb = sum(v.nbytes for v in local.run(feeds[0]).values()) / 1e6
            in_mb = sum(v.nbytes for v in feeds[0].values()) / 1e6
            report["models"][model] = {
                "input_size": {k: list(v.shape) for k, v in feeds[0].items()},
                "request_mb": round(in_mb, 3),
                "response_mb": round(out_mb, 3),
                "local_ms": loc,
                "triton_ms": tri,
                "overhead_ms": {k: tri[k] - loc[k] for k in ("mean", "p50", "p95")},
                "server_split_ms": server_split_ms(client, model),
            }
            local.close()
            remote.close()
        client.close()
    report["load_after"] = os.getloadavg()
    for model, r in report["models"].items():
        loc, tri, d, s = r["local_ms"], r["triton_ms"], r["overhead_ms"], r["server_split_ms"]
        print(f"{model} {r['input_size']} ({r['request_mb']} MB in, {r['response_mb']} MB out), {loc['n']} requests:")
        print(f"  local ORT  mean {loc['mean']:7.2f}  p50 {loc['p50']:7.2f}  p95 {loc['p95']:7.2f} ms")
        print(f"  Triton     mean {tri['mean']:7.2f}  p50 {tri['p50']:7.2f}  p95 {tri['p95']:7.2f} ms")
        print(f"  overhead   mean {d['mean']:+7.2f}  p50 {d['p50']:+7.2f}  p95 {d['p95']:+7.2f} ms")
        print(
            f"  server side per request: total {s['success']:.2f} ms = queue {s['queue']:.2f} + input {s['compute_input']:.2f} "
            f"+ compute {s['compute_infer']:.2f} + output {s['compute_output']:.2f} ms"
        )
    print(
        f"load average before {report['load_before'][0]:.2f}, after {report['load_after'][0]:.2f} on {report['cpus']} CPUs"
    )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
