"""Several live cameras through one pipeline: per-camera fps, drops and latency, and the total.

    .venv/bin/python bench/multi_camera.py [--cameras 4] [--size 1280x720] [--fps 7.5] [--seconds 60]
        [--pipeline dashcam] [--config config.toml] [--mjpeg [--kill-one-at S]] [--json out.json]

Each camera is a live generated source (``synthetic://?...&live=1``: paced in real time, the
newest frame kept, drops counted), or with ``--mjpeg`` a real MJPEG-over-HTTP server on
127.0.0.1 per camera read through the network source (reconnects and all); ``--kill-one-at S``
stops the last camera's server after S seconds to show the others going on. Outputs go to
``null://`` (the pipeline's own cost). The goal this measures (on a quiet machine): every camera
keeps p95 latency under 300 ms, drops counted per camera.
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


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--size", default="1280x720", help="WxH")
    ap.add_argument("--fps", type=float, default=7.5, help="each camera's rate")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--pipeline", default="dashcam")
    ap.add_argument("--config", help="TOML config (default: ./config.toml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--mjpeg", action="store_true", help="one real MJPEG HTTP server per camera")
    ap.add_argument("--kill-one-at", type=float, default=None, help="--mjpeg: stop the last server after S seconds")
    ap.add_argument("--json")
    a = ap.parse_args()
    w, h = (int(x) for x in a.size.lower().split("x"))

    servers = []
    if a.mjpeg:
        from tests.mjpeg_server import MjpegServer

        for _ in range(a.cameras):
            srv = MjpegServer(fps=a.fps, size_hw=(h, w))
            srv.start()
            servers.append(srv)
        uris = [srv.url for srv in servers]
    else:
        uris = [f"synthetic://?width={w}&height={h}&fps={a.fps:g}&frames=0&live=1&seed={i}" for i in range(a.cameras)]

    config = load_config(a.config, a.set)
    config.pipeline.name = a.pipeline
    config.source.uris = uris
    config.output.uris = ["null://"]
    graph = make_graph(config)
    load_before = load_average()
    print(
        f"{a.cameras} cameras {w}x{h} at {a.fps:g} fps ({'MJPEG over HTTP' if a.mjpeg else 'generated, live'}), "
        f"pipeline {a.pipeline}, {a.seconds:g} s; load average before {load_before}",
        flush=True,
    )
    timers = [threading.Timer(a.seconds, graph.stop)]
    if a.kill_one_at is not None and servers:
        timers.append(threading.Timer(a.kill_one_at, servers[-1].stop))
    for t in timers:
        t.daemon = True
        t.start()
    t0 = time.perf_counter()
    report = graph.run(progress=True)
    wall = time.perf_counter() - t0
    for t in timers:
        t.cancel()
    for srv in servers:
        srv.stop()
    doc = report.metrics
    doc["bench"] = {
        "cameras": a.cameras,
        "size": [w, h],
        "fps_each": a.fps,
        "seconds": round(wall, 1),
        "mjpeg": a.mjpeg,
        "load_before": load_before,
        "load_after": load_average(),
        "cpus": os.cpu_count(),
    }
    print(f"{'camera':<8} {'state':<10} {'in':>6} {'out':>6} {'dropped':>8} {'fps':>6} {'p50 ms':>8} {'p95 ms':>8}")
    for sid, s in doc.get("sources", {}).items():
        lat = s["latency_ms"]
        print(
            f"{sid:<8} {s['state']:<10} {s['frames_in']:>6} {s['frames_out']:>6} {s['frames_dropped']:>8} "
            f"{s['fps']:>6.2f} {lat['p50']:>8.0f} {lat['p95']:>8.0f}" + (f"  {s['error']}" if "error" in s else "")
        )
    lat = doc["latency_ms"]
    print(
        f"{'total':<8} {'':<10} {doc['frames_in']:>6} {doc['frames_out']:>6} {doc['frames_dropped']:>8} "
        f"{doc['fps']:>6.2f} {lat['p50']:>8.0f} {lat['p95']:>8.0f}"
    )
    sched = doc.get("extra", {}).get("schedule")
    if sched:
        print(
            f"schedule: every {sched['every']}, budget {sched['budget_ms']} ms per frame at {sched['target_fps']} fps"
        )
    print(f"load average after {doc['bench']['load_after']}; error: {report.error}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(doc, fh, indent=1)
    return 1 if report.error is not None else 0


if __name__ == "__main__":
    sys.exit(main())
