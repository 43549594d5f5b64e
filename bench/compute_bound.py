"""How close each runtime gets to this CPU's arithmetic peak (a script, not a test).

For each model at its default size: the convolution and linear work (GFLOP, counted with
forward hooks: 2 x multiply-adds), the latency through torch eager (NCHW, the default),
torch eager channels_last and ONNX Runtime (fp32, all graph optimisations), and the GFLOP/s
each achieves, next to a reference rate: a large fp32 matrix product through ONNX Runtime
with the same threads (its convolutions can run faster still: on this AVX2/FMA CPU at 2.45 GHz
the arithmetic peak of 2 cores is 157 GFLOP/s, more with boost clocks). A model whose ONNX
Runtime rate is already near that cannot be made much faster by another runtime; that bounds
the "ONNX Runtime >= 2x torch eager" goal.

    .venv/bin/python bench/compute_bound.py [--threads 2] [--iters 5] [--models a,b] [--json OUT]

Random weights; figures are medians after two warm-up calls. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.semantic import median_ms  # noqa: E402  (same timing for both scripts)

#: model -> default (H, W); None: the configuration's own fixed size (YOLACT: 550, tiny: 160).
DEFAULTS = {
    "yolact_resnet50": None,
    "yolact_mobilenetv3": None,
    "yolact_tiny": None,
    "deeplabv3_mobilenet_v3_large": (360, 640),
    "lraspp_mobilenet_v3_large": (360, 640),
    "deeplabv3plus_mobilenet": (360, 640),
    "deeplab_tiny": (216, 384),
    "fcn8s_resnet18": (360, 640),
    "unet_small": (368, 640),
    "maskrcnn_resnet50_fpn": (550, 550),
    "maskrcnn_resnet50_fpn_v2": (550, 550),
}


def count_gflop(module, x) -> float:
    """2 x multiply-adds of every Conv2d, ConvTranspose2d and Linear in one forward pass."""
    import torch
    from torch import nn

    total = [0]

    def hook(mod, inputs, output):
        if isinstance(mod, nn.Linear):
            total[0] += output.numel() * mod.in_features
        elif isinstance(mod, nn.ConvTranspose2d):
            total[0] += inputs[0].numel() * mod.out_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        else:
            total[0] += output.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    with torch.inference_mode():
        module(x)
    for h in handles:
        h.remove()
    return 2 * total[0] / 1e9


def gemm_peak_gflops(threads: int, n: int = 1536, iters: int = 5) -> float:
    """fp32 GFLOP/s of an n x n x n matrix product through ONNX Runtime (MLAS)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gemm",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"a": rng.normal(size=(n, n)).astype(np.float32), "b": rng.normal(size=(n, n)).astype(np.float32)}
    ms = median_ms(lambda: sess.run(None, feeds), iters)
    return 2 * n**3 / (ms / 1e3) / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--models", default=",".join(DEFAULTS))
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    import torch

    from segstream.export.bench import subject_for
    from segstream.stream.backends.onnxruntime import OnnxRuntimeBackend

    torch.set_num_threads(args.threads)
    peak = gemm_peak_gflops(args.threads)
    print(f"reference: ONNX Runtime MatMul 1536^3, {args.threads} threads: {peak:.1f} GFLOP/s", flush=True)
    doc = {"threads": args.threads, "iters": args.iters, "gemm_peak_gflops": round(peak, 1), "models": {}}
    print(
        "| model @ input | GFLOP | torch eager | torch channels_last | ONNX Runtime | ORT / eager | ORT GFLOP/s (% of the MatMul rate) |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            torch.manual_seed(0)
            subject = subject_for(name, None, DEFAULTS[name])
            size = subject.size_hw
            module = subject.module.eval()
            x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, *size)).astype(np.float32))
            gflop = count_gflop(module, x)
            with torch.inference_mode():
                eager = median_ms(lambda: module(x), args.iters)
                cl_module = module.to(memory_format=torch.channels_last)
                xc = x.contiguous(memory_format=torch.channels_last)
                channels_last = median_ms(lambda: cl_module(xc), args.iters)
                module.to(memory_format=torch.contiguous_format)
            path = subject.export(os.path.join(tmp, f"{name}.onnx"), size)
            backend = OnnxRuntimeBackend(path, intra_op_threads=args.threads)
            feeds = {subject.input_name: x.numpy()}
            onnx_ms = median_ms(lambda: backend.run(feeds), args.iters)
            backend.close()
            rate = gflop / (onnx_ms / 1e3)
            row = {
                "size_hw": list(size),
                "gflop": round(gflop, 2),
                "torch_eager_ms": round(eager, 1),
                "torch_channels_last_ms": round(channels_last, 1),
                "onnxruntime_ms": round(onnx_ms, 1),
                "ort_vs_eager": round(eager / onnx_ms, 2),
                "ort_gflops": round(rate, 1),
                "torch_eager_gflops": round(gflop / (eager / 1e3), 1),
            }
            doc["models"][name] = row
            print(
                f"| {name} @ {size[0]}x{size[1]} | {gflop:.2f} | {eager:.0f} ms | {channels_last:.0f} ms | "
                f"{onnx_ms:.0f} ms | {eager / onnx_ms:.2f}x | {rate:.0f} ({100 * rate / peak:.0f} %) |",
                flush=True,
            )
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
