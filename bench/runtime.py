"""The runtime's own cost: synthetic 1280x720 frames through N no-op stages to a null sink.

    .venv/bin/python bench/runtime.py [--frames 5000] [--stages 4] [--json out.json]

Same as ``segstream bench pipeline`` without --pipeline/--config. Reports frames/s, wall time
per hop (frames/s inverted and divided by the hops source->stage->...->sink) and CPU time per
hop (process CPU seconds per frame per hop: what the runtime costs the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segstream.pipelines.apps.app import bench_pipeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--stages", type=int, default=4)
    ap.add_argument("--queue-size", type=int, default=4)
    ap.add_argument("--json")
    a = ap.parse_args()
    doc = bench_pipeline(f"synthetic://?width=1280&height=720&frames={a.frames}", a.stages, None, a.queue_size)
    b = doc["bench"]
    print(
        f"{b['stages']} no-op stages, {doc['frames_out']} frames 1280x720 on {b['cpus']} CPUs: "
        f"{b['frames_per_s']:.0f} frames/s, {b['per_hop_us']:.1f} us wall/hop, {b['cpu_per_hop_us']:.1f} us CPU/hop, "
        f"e2e latency p50 {doc['latency_ms']['p50']:.2f} ms p99 {doc['latency_ms']['p99']:.2f} ms"
    )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(doc, fh, indent=2)


if __name__ == "__main__":
    main()
