"""Time the synthetic road-scene generator on one core.

Usage: .venv/bin/python bench/synthetic.py [--width 1280 --height 720 --frames 200 --seed 0]
Prints milliseconds per frame (mean, p50, p95) for a SceneSequence clip and for stills.
"""

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from segstream.models.synthetic import SceneConfig, SceneSequence, generate_scene  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    cv2.setNumThreads(1)
    config = SceneConfig(a.width, a.height)
    seq = SceneSequence(a.seed, config)
    seq.next_sample()  # warm-up
    times = []
    for _ in range(a.frames):
        t0 = time.perf_counter()
        seq.next_sample()
        times.append((time.perf_counter() - t0) * 1e3)
    t = np.array(times)
    print(
        f"clip  {a.width}x{a.height}: {t.mean():.1f} ms/frame mean, p50 {np.percentile(t, 50):.1f}, "
        f"p95 {np.percentile(t, 95):.1f} ({a.frames} frames, 1 thread)"
    )
    times = []
    for i in range(max(a.frames // 4, 1)):
        t0 = time.perf_counter()
        generate_scene((a.seed, i), config)
        times.append((time.perf_counter() - t0) * 1e3)
    t = np.array(times)
    print(
        f"still {a.width}x{a.height}: {t.mean():.1f} ms/image mean, p50 {np.percentile(t, 50):.1f}, "
        f"p95 {np.percentile(t, 95):.1f} (new SceneSequence each, 1 thread)"
    )


if __name__ == "__main__":
    main()
