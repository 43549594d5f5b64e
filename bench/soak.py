"""Soak: many synthetic frames through a pipeline, with resident memory and thread count sampled.

    .venv/bin/python bench/soak.py [--frames 20000] [--pipeline edges] [--size 1280x720] [--json out.json]

Passes when, after warm-up (the first 10 % of the run), resident memory grows by at most 5 %
and the thread count does not grow. Not a unit test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segstream.pipelines.apps.app import make_graph  # noqa: E402
from segstream.pipelines.apps.config import load_config  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--pipeline", default="edges")
    ap.add_argument("--config")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--output", action="append", default=None, help="sinks (default: a JSON Lines file in /tmp)")
    ap.add_argument("--json")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    config = load_config(a.config)
    config.source.uri = f"synthetic://?width={w}&height={h}&frames={a.frames}"
    config.pipeline.name = a.pipeline
    config.output.uris = a.output or ["/tmp/segstream_soak.jsonl"]
    graph = make_graph(config)
    samples: list[tuple[float, int, float, int]] = []
    done = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not done.wait(1.0):
            samples.append((time.monotonic() - t0, graph.metrics.frames_out, rss_mb(), threading.active_count()))

    sampler = threading.Thread(target=sample, daemon=True)
    t0 = time.monotonic()
    graph.start()
    sampler.start()
    graph.wait()
    done.set()
    sampler.join()
    graph.close()
    wall = time.monotonic() - t0
    if graph.error is not None:
        print(f"soak failed: {graph.error}")
        return 1
    warm = [s for s in samples if s[1] >= a.frames * 0.1]
    base_rss, end_rss = warm[0][2], warm[-1][2]
    peak_rss = max(s[2] for s in warm)
    base_threads, end_threads = warm[0][3], warm[-1][3]
    growth = (end_rss - base_rss) / base_rss * 100
    ok = growth <= 5.0 and end_threads <= base_threads
    doc = {
        "frames": graph.metrics.frames_out,
        "pipeline": a.pipeline,
        "size": a.size,
        "wall_s": round(wall, 1),
        "fps": round(graph.metrics.frames_out / wall, 1),
        "rss_mb_after_warmup": round(base_rss, 1),
        "rss_mb_end": round(end_rss, 1),
        "rss_mb_peak": round(peak_rss, 1),
        "rss_growth_pct": round(growth, 2),
        "threads_after_warmup": base_threads,
        "threads_end": end_threads,
        "pass": ok,
        "samples": [[round(t, 1), n, round(r, 1), th] for t, n, r, th in samples],
    }
    print(
        f"soak {a.pipeline} {a.size}: {doc['frames']} frames in {doc['wall_s']} s ({doc['fps']} fps); "
        f"RSS {base_rss:.1f} -> {end_rss:.1f} MB (peak {peak_rss:.1f}, {growth:+.2f} %), "
        f"threads {base_threads} -> {end_threads}: {'PASS' if ok else 'FAIL'}"
    )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(doc, fh, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
