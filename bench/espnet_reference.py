"""Latency of a road model next to ESPNet's (Mehta et al., ECCV 2018), the CamVid anchor.

ESPNet is rebuilt here from the paper's description (ESP modules: 1x1 reduction, five parallel
dilated 3x3 convolutions at rates 1, 2, 4, 8, 16 summed hierarchically; input reinforcement by
average-pooled images; the full model with its light decoder; alpha2 = 2, alpha3 = 8 as for its
released models), with random weights: its speed does not depend on them. Both are exported
to ONNX and run through ONNX Runtime on the CPU at the same input, in alternation, so machine
load affects both alike; the script prints each one's median and the ratio.

    python bench/espnet_reference.py --artifact weights/deeplabv3plus_lite0_camvid.onnx \
        --size 360x480 --threads 2 --runs 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_espnet(num_classes: int = 11, p: int = 2, q: int = 8):
    import torch
    from torch import nn

    class CBR(nn.Sequential):
        def __init__(self, cin, cout, k, stride=1):
            super().__init__(
                nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=False),
                nn.BatchNorm2d(cout, eps=1e-3),
                nn.PReLU(cout),
            )

    class BR(nn.Sequential):
        def __init__(self, c):
            super().__init__(nn.BatchNorm2d(c, eps=1e-3), nn.PReLU(c))

    class ESP(nn.Module):
        """Reduce (1x1, or 3x3 stride 2 when down-sampling), 5 dilated branches, hierarchical sums."""

        def __init__(self, cin, cout, down=False, residual=True):
            super().__init__()
            n = cout // 5
            n1 = cout - 4 * n
            self.reduce = nn.Conv2d(cin, n, 3 if down else 1, 2 if down else 1, 1 if down else 0, bias=False)
            self.branches = nn.ModuleList(
                [nn.Conv2d(n, n1 if d == 1 else n, 3, 1, d, dilation=d, bias=False) for d in (1, 2, 4, 8, 16)]
            )
            self.residual = residual and not down and cin == cout
            self.out = BR(cout)

        def forward(self, x):
            r = self.reduce(x)
            d = [b(r) for b in self.branches]
            acc, sums = d[1], [d[1]]
            for t in d[2:]:
                acc = acc + t
                sums.append(acc)
            y = torch.cat([d[0], *sums], 1)
            return self.out(x + y if self.residual else y)

    class ESPNet(nn.Module):
        def __init__(self):
            super().__init__()
            c = num_classes
            self.level1 = CBR(3, 16, 3, 2)
            self.pool = nn.AvgPool2d(3, 2, 1)
            self.b1 = BR(19)
            self.level2_0 = ESP(19, 64, down=True)
            self.level2 = nn.Sequential(*[ESP(64, 64) for _ in range(p)])
            self.b2 = BR(131)
            self.level3_0 = ESP(131, 128, down=True)
            self.level3 = nn.Sequential(*[ESP(128, 128) for _ in range(q)])
            self.b3 = BR(256)
            self.enc_classifier = nn.Conv2d(256, c, 1, bias=False)
            self.level3_c = nn.Conv2d(131, c, 1, bias=False)
            self.br = nn.BatchNorm2d(c, eps=1e-3)
            self.up_l3 = nn.Sequential(nn.ConvTranspose2d(c, c, 2, 2, bias=False), BR(c))
            self.combine = ESP(2 * c, c, residual=False)
            self.up_l2 = nn.Sequential(nn.ConvTranspose2d(c, c, 2, 2, bias=False), BR(c))
            self.conv = CBR(19 + c, c, 3)
            self.classifier = nn.ConvTranspose2d(c, c, 2, 2, bias=False)

        def forward(self, x):
            inp1 = self.pool(x)
            inp2 = self.pool(inp1)
            out0 = self.b1(torch.cat([self.level1(x), inp1], 1))
            out1_0 = self.level2_0(out0)
            out1 = self.b2(torch.cat([self.level2(out1_0), out1_0, inp2], 1))
            out2_0 = self.level3_0(out1)
            out2 = self.b3(torch.cat([out2_0, self.level3(out2_0)], 1))
            up3 = self.up_l3(self.br(self.enc_classifier(out2)))
            up2 = self.up_l2(self.combine(torch.cat([self.level3_c(out1), up3], 1)))
            return self.classifier(self.conv(torch.cat([up2, out0], 1)))

    return ESPNet().eval()


def _session(path: str, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", required=True, help="the road model's ONNX export (dynamic H/W)")
    ap.add_argument("--size", default="360x480", help="HxW of the frames (the road model is padded to its multiple)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args(argv)
    import torch

    from segstream.export.onnx import read_metadata
    from segstream.pipelines.tasks.road import SizePolicy
    from segstream.stream.backends.base import ArtifactMetadata  # noqa: F401  (the artifact's own metadata below)

    h, w = (int(v) for v in args.size.lower().split("x"))
    meta = read_metadata(args.artifact)
    ph, pw = SizePolicy.from_dict((meta.extra or {}).get("size_policy")).padded_size((h, w))
    esp_path = os.path.join(tempfile.mkdtemp(), "espnet.onnx")
    torch.onnx.export(
        build_espnet(),
        torch.zeros(1, 3, h, w),
        esp_path,
        input_names=["image"],
        output_names=["logits"],
        opset_version=17,
        dynamo=False,
    )
    sessions = {
        "espnet (alpha2=2, alpha3=8)": (_session(esp_path, args.threads), (h, w)),
        os.path.basename(args.artifact): (_session(args.artifact, args.threads), (ph, pw)),
    }
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for i in range(args.runs + 3):
        for name, (sess, (sh, sw)) in sessions.items():
            x = rng.standard_normal((1, 3, sh, sw)).astype(np.float32)
            feed = {sess.get_inputs()[0].name: x}
            t = time.perf_counter()
            sess.run(None, feed)
            if i >= 3:
                times[name].append((time.perf_counter() - t) * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, (_, (sh, sw)) in sessions.items():
        print(f"{name:40s} {sh}x{sw}  median {med[name]:6.1f} ms  p90 {np.percentile(times[name], 90):6.1f} ms")
    a, b = list(med.values())
    print(
        f"ratio road model / ESPNet: {b / a:.2f} ({args.threads} threads, {args.runs} runs each, alternated; "
        f"load average {os.getloadavg()[0]:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
