"""Track statistics on real clips (no ground truth) with the instance model, detections cached
so tracker settings can be compared on exactly the same detections.

    .venv/bin/python bench/tracks.py --clips /work/shared/data/clips/highway_640x360.mp4 \
        /work/shared/data/clips/highway_1280x720.mp4 [--every 2] [--set min_hits=3 ...]

Prints, per clip and setting: tracks started, confirmed, confirmed tracks that ended having
lived fewer than 5 frames, and the settings of today's defaults next to the pre-issue-18
tracker (every detection reported, tracks kept 15 frames).
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402

from segstream.pipelines.apps.config import load_config  # noqa: E402
from segstream.pipelines.tasks.tracking import InstanceTracker  # noqa: E402

SETTINGS = {
    "before (report all, max_age 15)": dict(min_hits=1, max_age=15, coast_s=None),
    "default": {},
}


def detections(clip: str, cache_dir: str, artifact: str, score_threshold: float) -> list:
    """[(seq, pts_s, Instances)] of every frame, from the cache when it exists."""
    key = f"{os.path.basename(clip)}.{os.path.basename(artifact)}.{score_threshold:g}.pkl"
    path = os.path.join(cache_dir, key)
    if os.path.isfile(path):
        with open(path, "rb") as fh:
            return pickle.load(fh)
    from segstream.pipelines.tasks.yolact import YolactRunner
    from segstream.stream.backends import open_backend

    runner = YolactRunner(
        open_backend(artifact, providers=["cpu"], intra_op_threads=1, inter_op_threads=1),
        score_threshold=score_threshold,
    )
    cap = cv2.VideoCapture(clip)
    out, seq = [], 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append((seq, cap.get(cv2.CAP_PROP_POS_MSEC) / 1e3, runner(img)))
        seq += 1
    os.makedirs(cache_dir, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(out, fh)
    return out


def track(dets: list, every: int, **options) -> dict:
    tracker = InstanceTracker(**options)
    for seq, pts, inst in dets:
        if seq % every == 0:
            tracker.update(inst, seq, pts)
    return tracker.finish().to_json_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", required=True)
    ap.add_argument("--every", type=int, default=1, help="run the instance model on every n-th frame")
    ap.add_argument("--cache", default="out/track_cache")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra tracker setting to compare, e.g. min_hits=4 (repeatable, one row)",
    )
    args = ap.parse_args()
    config = load_config(None)
    t = config.tracking
    base = dict(iou_threshold=t.iou_threshold, max_age=t.max_age, min_hits=t.min_hits, coast_s=t.coast_s)
    rows = dict(SETTINGS)
    if args.set:
        rows["custom " + " ".join(args.set)] = {
            k: float(v) if "." in v else int(v) for k, v in (a.split("=") for a in args.set)
        }
    for clip in args.clips:
        dets = detections(clip, args.cache, config.instances.artifact, config.instances.score_threshold)
        print(f"{os.path.basename(clip)}: {len(dets)} frames, instance model on every {args.every}")
        for name, over in rows.items():
            s = track(dets, args.every, **{**base, **over})
            print(
                f"  {name:<36} started {s['tracks_started']:4d}  confirmed {s['tracks_confirmed']:4d}  "
                f"ended under 5 frames {s['confirmed_under_5_frames']:3d} ({100 * s['confirmed_short_share']:.1f} %)"
                f"  alive at end {s['confirmed_alive_at_end']}"
            )


if __name__ == "__main__":
    main()
