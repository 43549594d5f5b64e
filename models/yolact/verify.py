"""Checks that an exported YOLACT artifact reproduces its torch network."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from segstream.pipelines.tasks.yolact import OUTPUT_NAMES, YolactPreprocess, YolactRunner


def sample_image(size_hw=(480, 640), seed: int = 0) -> np.ndarray:
    """A real-looking BGR frame: smooth gradients, texture and a few filled shapes (uint8)."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size_hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 200, yy / h * 180, (xx + yy) / (h + w) * 160], -1)
    img += cv2.resize(rng.normal(0, 25, (h // 16, w // 16, 3)).astype(np.float32), (w, h))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(6):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.circle(img, (x, y), int(rng.integers(h // 12, h // 4)), c, -1)
    return img


@dataclass
class VerifyReport:
    """Relative error per output (max |a - b| / max |b|) and the detection comparison."""

    errors: dict[str, float] = field(default_factory=dict)
    detections: tuple[int, int] = (0, 0)
    labels_equal: bool = True
    min_mask_iou: float = 1.0
    tolerance: float = 1e-4
    failure: str = ""

    @property
    def ok(self) -> bool:
        return not self.failure

    def lines(self) -> list[str]:
        out = [f"{k}: relative error {v:.2e} (tolerance {self.tolerance:.0e})" for k, v in self.errors.items()]
        out.append(
            f"detections: artifact {self.detections[0]}, torch {self.detections[1]}, "
            f"labels equal {self.labels_equal}, min mask IoU {self.min_mask_iou:.4f}"
        )
        out.append("OK" if self.ok else f"FAILED: {self.failure}")
        return out


def mask_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU per pair of (N, H, W) bool masks; 1 where both are empty."""
    inter = (a & b).reshape(len(a), -1).sum(1)
    union = (a | b).reshape(len(a), -1).sum(1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def verify_artifact(path: str, net, image_bgr: np.ndarray | None = None, tolerance: float = 1e-4) -> VerifyReport:
    """Runs the artifact (ONNX Runtime, CPU) and the torch network on the same frame.

    Args:
        path: the .onnx file. net: the torch ``Yolact`` it came from. image_bgr: a frame (default: ``sample_image``).
    """
    from segstream.export.onnx import relative_error
    from segstream.models.yolact.runtime import TorchYolactBackend
    from segstream.stream.backends.onnxruntime import OnnxRuntimeBackend

    ort = OnnxRuntimeBackend(path, providers=("cpu",))
    ref = TorchYolactBackend(net, "torch")
    img = sample_image() if image_bgr is None else image_bgr
    feeds, _ = YolactPreprocess.from_metadata(ref.metadata)(img)
    a, b = ort.run(feeds), ref.run(feeds)
    report = VerifyReport(tolerance=tolerance)
    report.errors = {n: relative_error(a[n], b[n]) for n in OUTPUT_NAMES}
    bad = [n for n, e in report.errors.items() if not e <= tolerance]
    ia, ib = YolactRunner(ort)(img), YolactRunner(ref)(img)
    report.detections = (len(ia), len(ib))
    same_n = len(ia) == len(ib)
    report.labels_equal = same_n and bool(np.array_equal(ia.labels, ib.labels))
    if same_n and len(ia):
        report.min_mask_iou = float(mask_ious(ia.masks, ib.masks).min())
    if bad:
        report.failure = f"outputs {bad} differ by more than {tolerance:g}"
    elif not report.labels_equal:
        report.failure = "the detections differ"
    elif report.min_mask_iou <= 0.99:
        report.failure = f"a mask differs (IoU {report.min_mask_iou:.3f})"
    return report
