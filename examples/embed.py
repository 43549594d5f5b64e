"""Embedding segstream in a program: the README's example, runnable from the repository root.

    python examples/embed.py [OUT_DIR] [MAX_FRAMES]

It first writes its inputs from generated street scenes (a clip, and the clip's first frame as
a PNG), then runs the default pipeline (config.toml: instances, road semantics, tracking,
overlay) over the clip and one model on the frame. Outputs go to OUT_DIR (default out/embed).
"""

import os
import sys

import cv2

import segstream

out = sys.argv[1] if len(sys.argv) > 1 else "out/embed"
max_frames = int(sys.argv[2]) if len(sys.argv) > 2 else 300
clip, frame_png = os.path.join(out, "clip.mp4"), os.path.join(out, "frame.png")

# The inputs: generated frames straight to a video file (no stages), and its first frame.
segstream.open_pipeline(
    {"pipeline": {"name": "passthrough"}},
    source="synthetic://?width=640&height=360&frames=300",
    sinks=[clip],
    max_frames=max_frames,
).run(progress=False)
cv2.imwrite(frame_png, cv2.VideoCapture(clip).read()[1])

# A whole pipeline, as `segstream run` runs it: config file (or dict), source and sinks by URI.
pipe = segstream.open_pipeline(
    "config.toml",
    source=clip,
    sinks=[os.path.join(out, "overlay.mp4"), os.path.join(out, "results.jsonl")],
    max_frames=max_frames,
)
report = pipe.run()  # blocks; returns the run report (frames, fps, latency)
print(report.frames, report.fps)

# One model on one image: any exported artifact, its metadata says what it is.
runner = segstream.load_runner("weights/deeplabv3plus_lite0_camvid.onnx")
result = runner(cv2.imread(frame_png))  # SemanticMap (class_ids per pixel) or Instances (boxes, masks, scores)
print(type(result).__name__, result.class_shares())
