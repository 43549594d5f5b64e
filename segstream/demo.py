"""``segstream demo`` (what ``make demo`` runs): generate a road clip with ground truth, run the
full dashcam pipeline on it with the embedded models, write the overlay video, the JSON Lines
results and the metrics, and score the results against the ground truth.

Needs no network and no GPU. The embedded models are the small YOLACT and DeepLab networks the
project trained on generated scenes (``weights/``; see README for the commands).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from segstream.stream.errors import ConfigError
from segstream.stream.frame import Frame
from segstream.stream.sinks.base import Sink

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
INSTANCES_ARTIFACT = os.path.join(WEIGHTS_DIR, "yolact_tiny_synthetic.onnx")
SEMANTIC_ARTIFACT = os.path.join(WEIGHTS_DIR, "deeplab_tiny_synthetic.onnx")


@dataclass
class Accuracy:
    """Figures against ground truth.

    Attributes:
        mask_ap50: per class name, COCO mask AP at IoU 0.5 (pycocotools).
        mask_ap: per class name, COCO mask AP at IoU 0.5:0.95.
        miou: mean IoU over the classes present in the ground truth or the prediction
            (the same definition as ``segstream eval``).
        class_iou: IoU per class name.
        pixel_accuracy: fraction of non-ignored pixels labelled right.
        id_switches: tracker identity switches against the ground-truth object ids.
    """

    mask_ap50: dict[str, float]
    mask_ap: dict[str, float]
    miou: float
    class_iou: dict[str, float]
    pixel_accuracy: float
    id_switches: int
    id_matches: int


class GroundTruthSink(Sink):
    """Collects predictions per frame and compares them with a generated clip's ground truth.

    Args:
        clip_dir: the folder ``segstream generate --kind video`` wrote (instances.json, labels/).
        num_classes: semantic classes (19, Cityscapes train ids).
    """

    name = "ground-truth"

    def __init__(self, clip_dir: str, num_classes: int = 19) -> None:
        self.clip_dir = clip_dir
        with open(os.path.join(clip_dir, "instances.json"), encoding="utf-8") as fh:
            self.coco_gt = json.load(fh)
        self.image_id = {img["frame_index"]: img["id"] for img in self.coco_gt["images"]}
        self.category_id = {c["name"]: c["id"] for c in self.coco_gt["categories"]}
        self.gt_by_image: dict[int, list[dict]] = {}
        for ann in self.coco_gt["annotations"]:
            self.gt_by_image.setdefault(ann["image_id"], []).append(ann)
        from segstream.pipelines.tasks.metrics import ConfusionMatrix

        self.confusion = ConfusionMatrix(num_classes)
        self.detections: list[dict] = []
        self.scored: set[int] = set()  # images of the frames that came out (a live run drops some)
        self._lock = threading.Lock()
        from segstream.pipelines.tasks.tracking import IdSwitchCounter

        self.switches = IdSwitchCounter(iou_threshold=0.5)

    def write(self, frame: Frame) -> None:
        from segstream.pipelines.tasks.masks import rle_encode
        from segstream.pipelines.tasks.results import Instances, SemanticMap

        image_id = self.image_id.get(frame.seq)
        if image_id is None:
            return
        self.scored.add(image_id)
        inst = frame.results.get("instances")
        if isinstance(inst, Instances):
            names = inst.label_names()
            for i in range(len(inst)):
                cat = self.category_id.get(names[i])
                if cat is None or inst.masks is None:
                    continue
                x1, y1, x2, y2 = (float(v) for v in inst.boxes_xyxy[i])
                self.detections.append(
                    {
                        "image_id": image_id,
                        "category_id": cat,
                        "score": float(inst.scores[i]),
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "segmentation": rle_encode(inst.masks[i]),
                    }
                )
            gts = [a for a in self.gt_by_image.get(image_id, []) if not a.get("iscrowd")]
            if inst.track_ids is not None and gts:
                gt_boxes = np.array(
                    [
                        [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                        for a in gts
                    ],
                    np.float32,
                )
                self.switches.update(np.array([a["track_id"] for a in gts]), gt_boxes, inst.track_ids, inst.boxes_xyxy)
        sem = frame.results.get("semantic")
        if isinstance(sem, SemanticMap):
            gt = cv2.imread(os.path.join(self.clip_dir, "labels", f"{frame.seq:06d}.png"), cv2.IMREAD_UNCHANGED)
            if gt is not None and gt.shape == sem.class_ids.shape:
                self.confusion.update(sem.class_ids, gt)

    def accuracy(self, class_names: tuple[str, ...]) -> Accuracy:
        ap50, ap = self._coco_ap()
        sem = self.confusion.summary(class_names)
        return Accuracy(
            mask_ap50=ap50,
            mask_ap=ap,
            miou=round(sem["miou"], 4) if sem["pixels"] else 0.0,
            class_iou={k: round(v, 4) for k, v in sem["per_class_iou"].items()},
            pixel_accuracy=round(sem["pixel_accuracy"], 4) if sem["pixels"] else 0.0,
            id_switches=self.switches.switches,
            id_matches=self.switches.matches,
        )

    def _coco_ap(self) -> tuple[dict[str, float], dict[str, float]]:
        import contextlib
        import io

        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        if not self.detections:
            return ({c: 0.0 for c in self.category_id}, {c: 0.0 for c in self.category_id})
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO()
            gt.dataset = self.coco_gt
            gt.createIndex()
            dt = gt.loadRes(self.detections)
            ev = COCOeval(gt, dt, "segm")
            ev.params.imgIds = sorted(self.scored)
            ev.evaluate()
            ev.accumulate()
        from segstream.models.coco_eval import per_class_ap

        return per_class_ap(ev, {c: n for n, c in self.category_id.items()})


def run_demo(
    out: str,
    frames: int,
    width: int = 1280,
    height: int = 720,
    seed: int = 2024,
    instances_artifact: str = INSTANCES_ARTIFACT,
    semantic_artifact: str = SEMANTIC_ARTIFACT,
    live: bool = True,
    overrides: tuple[str, ...] = (),
) -> dict:
    """Generates a clip, runs the dashcam pipeline on it, scores it. Returns the summary.

    Args:
        live: play the clip as a live camera at its frame rate (frames the pipeline cannot take
            in time are dropped and counted), so the printed latency and the HUD's age are what
            a camera would see; False: as a file (every frame, as fast as the CPU allows).
        overrides: config ``section.key=value`` settings (as ``segstream run --set``).
    """
    for path in (instances_artifact, semantic_artifact):
        if not os.path.isfile(path):
            raise ConfigError(
                f"{path} is missing: the embedded models ship with the repository "
                "(see README, 'Embedded models', for the commands that rebuild them)"
            )
    clip_dir = os.path.join(out, "clip")
    make_clip(clip_dir, frames, width, height, seed)
    return score_clip(
        clip_dir,
        out,
        frames=frames,
        instances_artifact=instances_artifact,
        semantic_artifact=semantic_artifact,
        live=live,
        overrides=overrides,
    )


DEMO_FPS = 15.0


def make_clip(
    clip_dir: str, frames: int, width: int = 1280, height: int = 720, seed: int = 2024, fps: float = DEMO_FPS
) -> str:
    """Writes a generated road clip with per-frame ground truth into ``clip_dir``."""
    import itertools

    from segstream.models.synthetic.dataset import write_clip
    from segstream.models.synthetic.scene import SceneConfig, SceneSequence

    seq = SceneSequence(seed, SceneConfig(width=width, height=height, fps=fps))
    write_clip(itertools.islice(seq, frames), clip_dir, fps=fps)
    return clip_dir


def score_clip(
    clip_dir: str,
    out: str,
    *,
    frames: int | None = None,
    instances_artifact: str = INSTANCES_ARTIFACT,
    semantic_artifact: str = SEMANTIC_ARTIFACT,
    live: bool = True,
    overrides: tuple[str, ...] = (),
    fps: float = DEMO_FPS,
    progress: bool = True,
) -> dict:
    """Runs the dashcam pipeline on a generated clip and scores it against its ground truth.

    Writes ``overlay.mp4``, ``results.jsonl``, ``metrics.json`` and ``accuracy.json`` into ``out``
    and returns the summary (see ``run_demo`` for ``live`` and ``overrides``).
    """
    from segstream.pipelines.apps.app import make_graph, run_graph
    from segstream.pipelines.apps.config import load_config
    from segstream.stream.io import write_json

    config = load_config(None, list(overrides))
    config.source.uri, config.source.uris = os.path.join(clip_dir, "clip.mp4"), []
    if live and not any(o.startswith("schedule.target_fps") for o in overrides):
        config.schedule.target_fps = fps  # the camera's rate is the rate to hold
    config.pipeline.name = "dashcam"
    config.instances.artifact = instances_artifact
    config.semantic.artifact = semantic_artifact
    config.output.uris = [os.path.join(out, "overlay.mp4"), os.path.join(out, "results.jsonl")]
    gt = GroundTruthSink(clip_dir)
    graph = make_graph(config, extra_sinks=[gt], pace_fps=fps if live else None)
    report, _ = run_graph(graph, progress=progress, total=frames)
    write_json(os.path.join(out, "metrics.json"), report.metrics)
    if report.error is not None:
        raise report.error
    from segstream.models.synthetic.classes import CITYSCAPES_CLASSES

    acc = gt.accuracy(CITYSCAPES_CLASSES)
    m = report.metrics
    extra = m.get("extra", {})
    summary = {
        "frames": m["frames_out"],
        "frames_in": m["frames_in"],
        "frames_dropped": m["frames_dropped"],
        "live": live,
        "source_fps": fps,
        "fps": m["fps"],
        "latency_ms": m["latency_ms"],
        "schedule": extra.get("schedule"),
        "carry": extra.get("carry"),
        "tracks": extra.get("track"),
        "accuracy": acc.__dict__,
    }
    write_json(os.path.join(out, "accuracy.json"), summary)
    return summary


def demo_command(*, out: str, frames: int) -> int:
    """``segstream demo``: prints the figures; exit 0 when the run finished."""
    summary = run_demo(out, frames)
    acc = summary["accuracy"]
    mode = f"played live at {summary['source_fps']:g} fps" if summary["live"] else "as a file"
    print(
        f"demo: clip {mode}: {summary['frames']} of {summary['frames_in']} frames out "
        f"({summary['frames_dropped']} dropped), {summary['fps']:.1f} fps, latency p50 "
        f"{summary['latency_ms']['p50']:.0f} ms p95 {summary['latency_ms']['p95']:.0f} ms (what the HUD's age shows)"
    )
    if summary.get("carry"):
        c, sched = summary["carry"], summary.get("schedule") or {}
        print(
            "demo: fresh / carried results: "
            + ", ".join(
                f"{k} {c['fresh'][k]} / {c['carried'][k]} (oldest {c['max_age_frames'][k]} frames)" for k in c["fresh"]
            )
            + (f"; cadence {sched.get('every')}" if sched else "")
        )
    if summary.get("tracks"):
        t = summary["tracks"]
        print(
            f"demo: tracks started {t['tracks_started']}, confirmed {t['tracks_confirmed']}, "
            f"ended under 5 frames {t['confirmed_under_5_frames']}"
        )
    print(
        "demo: mask AP50 "
        + ", ".join(f"{k} {v:.3f}" for k, v in acc["mask_ap50"].items())
        + f"; mIoU {acc['miou']:.3f}; pixel accuracy {acc['pixel_accuracy']:.3f}; "
        f"ID switches {acc['id_switches']} in {acc['id_matches']} matches"
    )
    print(f"demo: wrote {out}/overlay.mp4, results.jsonl, metrics.json, accuracy.json and the clip in {out}/clip/")
    return 0
