"""Fleet throughput: N recordings through `segstream fleet` on a local Ray cluster, against a
sequential shell loop of `segstream run` and a hand-made parallel run (P shell loops at once
over parts of the list), with the outputs of the fleet checked against the sequential ones.

    .venv/bin/python bench/fleet.py [--count 8] [--frames 300] [--size 640x360] [--workers N]
                                    [--parallel 2] [--config fleet.toml] [--work /tmp/segstream_fleet_bench]
                                    [--json out.json]

Clips are generated road scenes (``SceneSequence``, seeds 0..N-1), 10 s at 30 fps by default.
Without ``--config`` the pipeline is the dashcam one on the embedded models with a fixed cadence
(instances and semantics every 2nd frame, staggered) and no HUD, so the results are
reproducible and compared byte for byte. The fleet is timed twice: from ``ray.init`` (what a
user of a local cluster waits) and with the cluster already up (what a standing cluster costs).
Prints the wall times, frames per second, the ratios, and the load average around each run:
on a shared machine the figures are only as good as the load was steady.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported: 127.0.0.1 only

import cv2  # noqa: E402

from segstream.pipelines.apps.config import load_config  # noqa: E402
from segstream.pipelines.apps.fleet import comparable_record, run_fleet  # noqa: E402

BENCH_TOML = """
[output]
uris = ["run.mp4", "run.jsonl"]
[pipeline]
name = "dashcam"
[instances]
artifact = "{root}/weights/yolact_tiny_synthetic.onnx"
[semantic]
artifact = "{root}/weights/deeplab_tiny_synthetic.onnx"
[schedule]
instances_every = 2
semantic_every = 2
[overlay]
hud = false
[runtime]
progress = false
"""


def write_clips(folder: str, count: int, frames: int, size_wh: tuple[int, int]) -> list[str]:
    """``count`` clips of generated road scenes; kept when already there with the same frame count."""
    from segstream.models.synthetic.scene import SceneConfig, SceneSequence

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"drive{i:02d}.mp4")
        paths.append(path)
        cap = cv2.VideoCapture(path)
        have = (
            (int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))) if cap.isOpened() else None
        )
        cap.release()
        if have == (frames, size_wh[0]):
            continue
        seq = SceneSequence(i, SceneConfig(width=size_wh[0], height=size_wh[1], fps=30))
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size_wh)
        for _ in range(frames):
            writer.write(seq.next_sample().image_bgr)
        writer.release()
    return paths


def shell_loop(clips: list[str], config: str, out: str, suffixes: list[str]) -> str:
    """A shell loop of `segstream run`, one process per clip (start-up and warm-up paid per clip)."""
    run = f"{shlex.quote(sys.executable)} -m segstream run --quiet --config {shlex.quote(config)}"
    outputs = " ".join(f'--output "{out}/$(basename "$f" .mp4){sfx}"' for sfx in suffixes)
    return f'for f in {" ".join(shlex.quote(c) for c in clips)}; do {run} --source "$f" {outputs} || exit 1; done'


def timed_shells(scripts: list[str]) -> float:
    """Runs the scripts at once; wall seconds until the last ends (fails if one fails)."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["bash", "-c", s], cwd=ROOT) for s in scripts]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a segstream run loop failed: exit codes {codes}")
    return time.perf_counter() - t0


def same_results(a_dir: str, b_dir: str, stems: list[str], suffixes: list[str]) -> list[str]:
    """Stems whose outputs differ (videos byte for byte, JSONL without wall-clock fields)."""
    differ = []
    for stem in stems:
        for sfx in suffixes:
            a, b = os.path.join(a_dir, stem + sfx), os.path.join(b_dir, stem + sfx)
            if sfx.endswith("jsonl"):
                with open(a) as fa, open(b) as fb:
                    same = [comparable_record(json.loads(x)) for x in fa] == [
                        comparable_record(json.loads(x)) for x in fb
                    ]
            else:
                with open(a, "rb") as fa, open(b, "rb") as fb:
                    same = fa.read() == fb.read()
            if not same:
                differ.append(stem + sfx)
    return differ


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=8, help="recordings")
    ap.add_argument("--frames", type=int, default=300, help="frames per recording (30 fps)")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--workers", type=int, default=None, help="fleet workers (default: the cluster's CPUs)")
    ap.add_argument(
        "--parallel", type=int, default=os.cpu_count() or 2, help="shell loops at once in the hand-made run"
    )
    ap.add_argument("--config", help="TOML config (default: the reproducible dashcam config above)")
    ap.add_argument("--work", default="/tmp/segstream_fleet_bench")
    ap.add_argument("--json", dest="json_out")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    os.makedirs(a.work, exist_ok=True)
    config_path = a.config or os.path.join(a.work, "fleet.toml")
    if not a.config:
        with open(config_path, "w") as fh:
            fh.write(BENCH_TOML.format(root=ROOT))
    config = load_config(config_path)
    from segstream.pipelines.apps.fleet import output_suffixes

    suffixes = output_suffixes(config)
    clips = write_clips(os.path.join(a.work, "clips"), a.count, a.frames, (w, h))
    stems = [os.path.splitext(os.path.basename(c))[0] for c in clips]
    frames = a.count * a.frames
    dirs = {k: os.path.join(a.work, k) for k in ("sequential", "fleet_cold", "fleet_warm", "parallel")}
    for d in dirs.values():
        subprocess.run(["rm", "-rf", d], check=True)
        os.makedirs(d)
    doc: dict = {"recordings": a.count, "frames_each": a.frames, "size": a.size, "cpus": os.cpu_count(), "runs": {}}
    print(f"{a.count} recordings x {a.frames} frames at {a.size}, {os.cpu_count()} CPUs; config {config_path}")

    def record(name: str, wall: float, before: str) -> None:
        doc["runs"][name] = {
            "wall_s": round(wall, 2),
            "fps": round(frames / wall, 2),
            "load_before": before,
            "load_after": load(),
        }
        print(f"  {name:<22} {wall:7.1f} s  {frames / wall:6.2f} fps   load avg before {before}, after {load()}")

    before = load()
    record("sequential", timed_shells([shell_loop(clips, config_path, dirs["sequential"], suffixes)]), before)

    before = load()
    t0 = time.perf_counter()
    report = run_fleet(clips, dirs["fleet_cold"], config, workers=a.workers, progress=False)
    record("fleet (incl. ray.init)", time.perf_counter() - t0, before)
    doc["fleet_workers"] = report.workers
    doc["fleet_setup_s"] = [round(r.setup_s, 2) for r in report.recordings]

    import ray

    ray.init(include_dashboard=False)
    try:
        before = load()
        t0 = time.perf_counter()
        warm = run_fleet(clips, dirs["fleet_warm"], config, workers=a.workers, progress=False)
        record("fleet (cluster up)", time.perf_counter() - t0, before)
    finally:
        ray.shutdown()

    before = load()
    parts = [clips[i :: a.parallel] for i in range(a.parallel)]
    record(
        f"hand-made {a.parallel} loops",
        timed_shells([shell_loop(p, config_path, dirs["parallel"], suffixes) for p in parts if p]),
        before,
    )

    failed = [r.stem for r in report.recordings + warm.recordings if r.status != "done"]
    differ = same_results(dirs["sequential"], dirs["fleet_cold"], stems, suffixes)
    differ += same_results(dirs["sequential"], dirs["fleet_warm"], stems, suffixes)
    runs = {k: v["wall_s"] for k, v in doc["runs"].items()}
    seq, cold, warm_s, hand = (
        runs["sequential"],
        runs["fleet (incl. ray.init)"],
        runs["fleet (cluster up)"],
        runs[f"hand-made {a.parallel} loops"],
    )
    doc["ratios"] = {
        "fleet_vs_sequential": round(seq / cold, 3),
        "fleet_up_vs_sequential": round(seq / warm_s, 3),
        "fleet_vs_hand_parallel": round(hand / cold, 3),
        "fleet_up_vs_hand_parallel": round(hand / warm_s, 3),
    }
    doc["identical_to_sequential"] = not differ
    doc["differing_outputs"] = differ
    doc["failed"] = failed
    r = doc["ratios"]
    print(
        f"fleet vs sequential loop: {r['fleet_vs_sequential']:.2f}x (cluster up: {r['fleet_up_vs_sequential']:.2f}x; goal >= 1.3x)"
    )
    print(
        f"fleet vs hand-made parallel: {r['fleet_vs_hand_parallel']:.2f}x (cluster up: {r['fleet_up_vs_hand_parallel']:.2f}x; "
        "goal >= 0.9x)"
    )
    print(
        f"fleet outputs identical to the sequential runs: {not differ}"
        + (f" (differ: {differ})" if differ else "")
        + (f"; failed: {failed}" if failed else "")
    )
    if a.json_out:
        with open(a.json_out, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
    return 0 if not differ and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
