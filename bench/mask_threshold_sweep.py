"""Mask AP of an instance model at several mask thresholds (a script, not a test): the network
runs once per image, then the masks are re-assembled and scored by ``segstream eval``'s COCO
code at each threshold. Pick the threshold on a tuning set, then report accuracy on a held-out
one with ``segstream eval`` (the embedded YOLACT was tuned on seed 3 and is scored on seed 2).

    .venv/bin/python -m segstream generate --out data/synth_tune --kind images --count 100 \\
        --width 640 --height 360 --seed 3
    .venv/bin/python bench/mask_threshold_sweep.py --model yolact_tiny \\
        --weights weights/yolact_tiny_synthetic.onnx --backend onnxruntime \\
        --annotations data/synth_tune/instances.json --images data/synth_tune \\
        --thresholds 0.3,0.35,0.4,0.45,0.5

With ``--write OUT.pth`` (a YOLACT .pth given as --weights), the checkpoint is copied to OUT with
the threshold of the best mask AP50 recorded; its exports and ``segstream eval`` then use it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segstream.models.coco_eval import evaluate_coco  # noqa: E402
from segstream.models.registry import family_of  # noqa: E402
from segstream.models.yolact.data import CocoInstances  # noqa: E402


def _runner(model: str, weights: str, backend: str):
    family = family_of(model)
    if family.task != "instances":
        raise SystemExit(f"{model} is not an instance model (YOLACT or Mask R-CNN)")
    # Each family's commands module has the same make_runner (what `segstream eval` uses).
    return family.command("make_runner")(model, weights, backend)


def sweep(runner, data: CocoInstances, thresholds: list[float]) -> list[dict]:
    """One ``evaluate_coco`` result per threshold, the network run once per image."""
    cache: dict[bytes, tuple] = {}

    def key(image_bgr) -> bytes:
        return hashlib.blake2b(image_bgr.tobytes(), digest_size=16).digest()

    for image_id in data.all_image_ids:
        img = data.load(image_id).image_bgr
        feeds, info = runner.preprocess(img)
        cache[key(img)] = (runner.backend.run(feeds), info)
    post = runner.postprocess
    results = []
    for t in thresholds:
        post.mask_threshold = t
        figures = evaluate_coco(lambda img: post(*cache[key(img)]), data)
        results.append({"mask_threshold": t, **figures})
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="yolact_tiny")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--backend", choices=["torch", "onnxruntime"], default="onnxruntime")
    ap.add_argument("--annotations", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--thresholds", default="0.3,0.35,0.4,0.45,0.5")
    ap.add_argument("--json", help="also write every figure to this file")
    ap.add_argument(
        "--write",
        metavar="OUT.pth",
        help="copy the --weights checkpoint here with the threshold of the best mask AP50 recorded (YOLACT .pth only)",
    )
    args = ap.parse_args()
    try:
        thresholds = [float(v) for v in args.thresholds.split(",")]
    except ValueError:
        raise SystemExit(f"--thresholds: expected comma-separated numbers, got {args.thresholds!r}") from None
    if any(not 0 < t < 1 for t in thresholds):
        raise SystemExit(f"--thresholds: each must be between 0 and 1, got {args.thresholds!r}")
    # --write needs a family whose checkpoints record a mask threshold (what train --mask-threshold sets).
    if args.write and (
        not family_of(args.model).accepts("train --mask-threshold") or not args.weights.endswith(".pth")
    ):
        raise SystemExit("--write needs a YOLACT .pth checkpoint as --weights")
    data = CocoInstances(args.annotations, args.images)
    results = sweep(_runner(args.model, args.weights, args.backend), data, thresholds)
    names = list(results[0]["mask"].get("per_class_AP50", {}))
    print("threshold  mask AP50  mask AP  " + "  ".join(f"{n} AP50" for n in names))
    for r in results:
        m = r["mask"]
        print(
            f"{r['mask_threshold']:9.2f}  {m['AP50'] * 100:9.1f}  {m['AP'] * 100:7.1f}  "
            + "  ".join(f"{m['per_class_AP50'][n] * 100:{len(n) + 5}.1f}" for n in names)
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    if args.write:
        from segstream.models.yolact.checkpoint import copy_with_metadata

        best = max(results, key=lambda r: r["mask"]["AP50"])
        copy_with_metadata(args.weights, args.write, mask_threshold=best["mask_threshold"])
        print(
            f"wrote {args.write} with mask threshold {best['mask_threshold']} "
            f"(mask AP50 {best['mask']['AP50'] * 100:.1f} %)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
