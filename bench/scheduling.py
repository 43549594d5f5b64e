"""What frame scheduling costs in accuracy: the dashcam pipeline on generated clips with
per-frame ground truth, run as files (every frame scored), once with both models on every frame
and once per schedule; mask AP50 per class, mIoU, tracker ID switches and track statistics.

    .venv/bin/python bench/scheduling.py --seeds 2024 7 --frames 90 \
        --schedules off 2,2 2,3 auto [--json out/scheduling.json]

A schedule "I,S" runs instances every I-th frame and semantics every S-th; "auto" lets the
scheduler choose from measured costs (``schedule.target_fps``, 30 by default), so its cadence
depends on the machine's load; "off" runs both models on every frame (the reference).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segstream.demo import make_clip, score_clip  # noqa: E402


def overrides_for(schedule: str) -> list[str]:
    if schedule == "off":
        return ["schedule.enabled=false"]
    if schedule == "auto":
        return []
    inst, sem = (int(v) for v in schedule.split(","))
    return [f"schedule.instances_every={inst}", f"schedule.semantic_every={sem}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[2024])
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--fps", type=float, default=15.0, help="frame rate of the generated clips (the demo's: 15)")
    ap.add_argument("--schedules", nargs="+", default=["off", "2,2", "2,3", "auto"])
    ap.add_argument("--out", default="out/scheduling")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    ap.add_argument("--json", help="write all summaries to this file")
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        clip_dir = os.path.join(args.out, f"clip_{seed}_{args.frames}_{args.fps:g}fps")
        if not os.path.isfile(os.path.join(clip_dir, "clip.mp4")):
            make_clip(clip_dir, args.frames, seed=seed, fps=args.fps)
        for schedule in args.schedules:
            out = os.path.join(args.out, f"run_{seed}_{args.fps:g}fps_{schedule.replace(',', '_')}")
            s = score_clip(
                clip_dir,
                out,
                frames=args.frames,
                live=False,
                progress=False,
                fps=args.fps,
                overrides=tuple(overrides_for(schedule) + args.set),
            )
            acc, t = s["accuracy"], s["tracks"] or {}
            row = {
                "seed": seed,
                "schedule": schedule,
                "fps": s["fps"],
                "latency_ms": s["latency_ms"],
                "mask_ap50": acc["mask_ap50"],
                "miou": acc["miou"],
                "id_switches": acc["id_switches"],
                "id_matches": acc["id_matches"],
                "tracks": t,
                "cadence": (s["schedule"] or {}).get("every"),
            }
            rows.append(row)
            ap50 = " ".join(f"{k} {v:.3f}" for k, v in acc["mask_ap50"].items())
            print(
                f"seed {seed} schedule {schedule:<5} cadence {row['cadence']}: mask AP50 {ap50}; mIoU {acc['miou']:.3f}; "
                f"ID switches {acc['id_switches']} in {acc['id_matches']}; tracks confirmed "
                f"{t.get('tracks_confirmed')} ended under 5 frames {t.get('confirmed_under_5_frames')}; "
                f"{s['fps']:.1f} fps, latency p50 {s['latency_ms']['p50']:.0f} ms",
                flush=True,
            )
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
