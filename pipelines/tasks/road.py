"""Road semantics on numpy and OpenCV: pre/post-processing for DeepLab-style artifacts,
Cityscapes classes and groups, the drivable-area mask, temporal smoothing and flicker.

Torch-free: everything a dashcam needs is read from the artifact's ``ArtifactMetadata``
(class names, palette, mean/std, colour order, size policy in ``extra["size_policy"]``).

Conventions: images are (H, W, 3) uint8 BGR; model inputs (1, 3, h, w) float32; logits
(1, C, h, w) float32 at model resolution; class maps (H, W) uint8 at frame resolution.
Nothing here modifies its inputs in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import cv2
import numpy as np

from segstream.pipelines.tasks.inference import normalised_nchw
from segstream.pipelines.tasks.results import SemanticMap
from segstream.stream.errors import ConfigError, ModelError

# --- classes ------------------------------------------------------------------------------------

#: Cityscapes train ids 0..18 (255 = ignore).
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
IGNORE_INDEX = 255

#: (19, 3) uint8, the cityscapesScripts colours in BGR order.
CITYSCAPES_PALETTE_BGR = np.array(
    [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ],
    dtype=np.uint8,
)[:, ::-1].copy()

#: Cityscapes labelId (0..33, -1) -> train id; everything else is 255.
CITYSCAPES_LABEL_TO_TRAIN = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}

#: Road-logic groups, by class name. A class in none of them goes to "other".
CLASS_GROUPS: dict[str, tuple[str, ...]] = {
    "drivable": ("road",),
    "sidewalk": ("sidewalk",),
    "construction": ("building", "wall", "fence"),
    "objects": ("pole", "traffic light", "traffic sign"),
    "nature": ("vegetation", "terrain"),
    "sky": ("sky",),
    "people": ("person", "rider"),
    "vehicles": ("car", "truck", "bus", "train", "motorcycle", "bicycle"),
}
GROUP_NAMES: tuple[str, ...] = (*CLASS_GROUPS, "other")


def default_palette_bgr(num_classes: int) -> np.ndarray:
    """(C, 3) uint8 BGR: the Cityscapes palette for 19 classes, else distinct golden-ratio hues."""
    if num_classes == len(CITYSCAPES_CLASSES):
        return CITYSCAPES_PALETTE_BGR.copy()
    hues = (np.arange(num_classes) * 0.618033988749895 % 1.0 * 179).astype(np.uint8)
    hsv = np.stack([hues, np.full_like(hues, 200), np.full_like(hues, 230)], axis=1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]


def lookup_table(mapping: dict[int, int], default: int = IGNORE_INDEX) -> np.ndarray:
    """(256,) uint8 table: ``table[old_id] = new_id``, ``default`` where unmapped."""
    lut = np.full(256, default, np.uint8)
    for k, v in mapping.items():
        if 0 <= int(k) < 256:
            lut[int(k)] = v
    return lut


def group_lut(class_names: tuple[str, ...]) -> np.ndarray:
    """(256,) uint8 table from class id to index in ``GROUP_NAMES`` (255 stays 255)."""
    lut = np.full(256, GROUP_NAMES.index("other"), np.uint8)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    for gi, members in enumerate(CLASS_GROUPS.values()):
        for i, name in enumerate(class_names):
            if name in members:
                lut[i] = gi
    return lut


def group_shares(class_ids: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float]:
    """Fraction of the image per group (groups present only).

    Args:
        class_ids: (H, W) uint8 class map.
        class_names: names indexed by class id.
    """
    groups = group_lut(class_names)[class_ids]
    counts = np.bincount(groups.ravel(), minlength=256)
    return {GROUP_NAMES[g]: round(float(counts[g]) / groups.size, 5) for g in range(len(GROUP_NAMES)) if counts[g]}


# --- size policy and pre/post-processing ----------------------------------------------------------


@dataclass(frozen=True)
class SizePolicy:
    """How a frame is resized before the model.

    Attributes:
        kind: "native" (no resize; the artifact has dynamic H/W), "fixed" (to ``size_hw``) or
            "short_side" (shorter side to ``short_side`` px, aspect kept; torchvision's recipe).
        size_hw: (H, W) for "fixed".
        short_side: pixels for "short_side".
        pad_multiple: after resizing, the input is padded at the bottom and right (with zeros
            after normalisation, i.e. the mean colour) to a multiple of this (U-Net: 2**depth);
            the logits are cropped back. 1: no padding.
    """

    kind: str = "native"
    size_hw: tuple[int, int] | None = None
    short_side: int | None = None
    pad_multiple: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("native", "fixed", "short_side"):
            raise ConfigError(f"size policy must be native, fixed or short_side, got {self.kind!r}")
        if self.kind == "fixed" and (self.size_hw is None or len(self.size_hw) != 2 or min(self.size_hw) < 16):
            raise ConfigError(f"size policy 'fixed' needs size_hw (H, W) with both >= 16, got {self.size_hw}")
        if self.kind == "short_side" and (self.short_side is None or self.short_side < 16):
            raise ConfigError(f"size policy 'short_side' needs short_side >= 16, got {self.short_side}")
        if not isinstance(self.pad_multiple, int) or self.pad_multiple < 1:
            raise ConfigError(f"size policy pad_multiple must be an integer >= 1, got {self.pad_multiple!r}")

    def model_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) a frame of ``frame_hw`` is resized to (before any ``pad_multiple`` padding)."""
        h, w = int(frame_hw[0]), int(frame_hw[1])
        if self.kind == "fixed":
            size_hw = cast("tuple[int, int]", self.size_hw)  # __post_init__: "fixed" has a size_hw
            return int(size_hw[0]), int(size_hw[1])
        if self.kind == "short_side":
            s = cast(int, self.short_side) / min(h, w)  # __post_init__: "short_side" has a short_side
            return max(1, round(h * s)), max(1, round(w * s))
        return h, w

    def padded_size(self, size_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) rounded up to ``pad_multiple``: the input the model sees after padding."""
        m = self.pad_multiple
        return -(-int(size_hw[0]) // m) * m, -(-int(size_hw[1]) // m) * m

    def to_dict(self) -> dict:
        d = {
            "kind": self.kind,
            "size_hw": None if self.size_hw is None else list(self.size_hw),
            "short_side": self.short_side,
        }
        if self.pad_multiple > 1:
            d["pad_multiple"] = self.pad_multiple
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> SizePolicy:
        if not d:
            return cls()
        if not isinstance(d, dict):
            raise ModelError(f"artifact size_policy must be a JSON object, got {type(d).__name__}; re-export the model")
        size = d.get("size_hw")
        return cls(
            kind=d.get("kind", "native"),
            size_hw=None if size is None else (int(size[0]), int(size[1])),
            short_side=d.get("short_side"),
            pad_multiple=d.get("pad_multiple", 1),
        )


def preprocess_image(
    image_bgr: np.ndarray, *, size_hw: tuple[int, int], mean, std, color_order: str = "RGB"
) -> np.ndarray:
    """Resize (bilinear, no antialias, half-pixel centres like torch's ``align_corners=False``),
    reorder channels, normalise.

    Args:
        image_bgr: (H, W, 3) uint8.
        size_hw: (h, w) model input size.
        mean / std: per channel, in the model's colour order, on 0-255 values.
        color_order: "RGB" or "BGR", what the network expects.

    Returns:
        (1, 3, h, w) float32 contiguous.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image_bgr.shape} {image_bgr.dtype}")
    h, w = size_hw
    img = image_bgr
    if img.shape[:2] != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    return normalised_nchw(img, mean, std, color_order)


def labels_from_logits(logits: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Argmax at model resolution, nearest resize to the frame.

    Args:
        logits: (1, C, h, w) or (C, h, w) float.
        frame_hw: (H, W) of the frame.

    Returns:
        (H, W) uint8 class ids.
    """
    if logits.ndim == 4:
        logits = logits[0]
    if logits.ndim != 3 or logits.shape[0] > 256:
        raise ModelError(f"expected logits (1, C, h, w) with C <= 256, got {logits.shape}")
    return resize_labels(np.argmax(logits, axis=0).astype(np.uint8), frame_hw)


def resize_labels(labels: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 -> (H, W) uint8 with nearest-neighbour (torch's ``mode="nearest"`` convention)."""
    if labels.shape == tuple(size_hw):
        return labels
    return cv2.resize(labels, (int(size_hw[1]), int(size_hw[0])), interpolation=cv2.INTER_NEAREST)


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Numerically stable softmax, float32."""
    z = logits.astype(np.float32) - logits.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


# --- drivable area --------------------------------------------------------------------------------


def drivable_mask(
    class_ids: np.ndarray, drivable_ids=(0,), *, seed_width: float = 0.2, seed_height: float = 0.05, close_px: int = 0
) -> np.ndarray:
    """Free space: drivable pixels 4-connected to the bottom centre of the frame.

    Every connected region of drivable pixels that touches the seed box (the bottom
    ``seed_height`` of the rows, the middle ``seed_width`` of the columns) is kept; road seen
    elsewhere (across a barrier, a parking lot on the side) is not.

    Args:
        class_ids: (H, W) uint8 class map.
        drivable_ids: class ids that count as drivable (Cityscapes: road = 0).
        seed_width / seed_height: size of the seed box as fractions of the frame (> 0).
        close_px: if > 0, a morphological closing with this square size first fills thin gaps
            (lane markings a model labelled otherwise).

    Returns:
        (H, W) bool mask.
    """
    if class_ids.ndim != 2:
        raise ValueError(f"expected an (H, W) class map, got {class_ids.shape}")
    if not (0 < seed_width <= 1 and 0 < seed_height <= 1):
        raise ValueError(f"seed_width and seed_height must be in (0, 1], got {seed_width}, {seed_height}")
    road: np.ndarray = np.isin(class_ids, np.asarray(drivable_ids, class_ids.dtype)).astype(np.uint8)
    if close_px > 0:
        road = cv2.morphologyEx(road, cv2.MORPH_CLOSE, np.ones((close_px, close_px), np.uint8))
    h, w = road.shape
    n, comp = cv2.connectedComponents(road, connectivity=4)
    if n <= 1:
        return np.zeros((h, w), bool)
    sh, sw = max(1, round(h * seed_height)), max(1, round(w * seed_width))
    x0 = (w - sw) // 2
    seeds = np.unique(comp[h - sh :, x0 : x0 + sw])
    seeds = seeds[seeds > 0]
    return np.isin(comp, seeds)


# --- temporal smoothing ---------------------------------------------------------------------------


class EmaSmoother:
    """Exponential moving average of class probabilities at model resolution.

    ``p = alpha * p_new + (1 - alpha) * p``; it restarts when the shape changes (a new source
    or input size) or after ``reset()`` (a scene cut).

    Args:
        alpha: weight of the newest frame, in (0, 1]; 1 means no smoothing.
    """

    def __init__(self, alpha: float = 0.6) -> None:
        if not 0 < alpha <= 1:
            raise ConfigError(f"EMA alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self._p: np.ndarray | None = None

    def reset(self) -> None:
        self._p = None

    def update(self, probabilities: np.ndarray) -> np.ndarray:
        """(C, h, w) float32 -> smoothed (C, h, w) float32 (a new array)."""
        if self._p is None or self._p.shape != probabilities.shape:
            self._p = probabilities.astype(np.float32, copy=True)
        else:
            self._p = self.alpha * probabilities + (1.0 - self.alpha) * self._p
        return self._p.copy()


class LabelHysteresis:
    """A pixel changes class only after the new class was seen ``frames`` frames in a row.

    Args:
        frames: consecutive frames a new class must persist (1: no smoothing).
    """

    _labels: np.ndarray | None
    _candidate: np.ndarray | None
    _count: np.ndarray | None

    def __init__(self, frames: int = 3) -> None:
        if frames < 1:
            raise ConfigError(f"hysteresis frames must be >= 1, got {frames}")
        self.frames = int(frames)
        self.reset()

    def reset(self) -> None:
        self._labels = self._candidate = self._count = None

    def update(self, labels: np.ndarray) -> np.ndarray:
        """(h, w) uint8 new labels -> (h, w) uint8 stable labels (a new array)."""
        if self._labels is None or self._labels.shape != labels.shape:
            self._labels = labels.copy()
            self._candidate = labels.copy()
            self._count = np.zeros(labels.shape, np.int32)
            return labels.copy()
        same = labels == self._labels
        repeat = (labels == self._candidate) & ~same
        # the three are set together: _labels not None means _count is not None
        self._count = np.where(same, 0, np.where(repeat, cast(np.ndarray, self._count) + 1, 1))
        self._candidate = np.where(same, self._labels, labels)
        switch = self._count >= self.frames
        self._labels = np.where(switch, labels, self._labels)
        self._count[switch] = 0
        return self._labels.copy()


class FlickerMeter:
    """Fraction of pixels whose class changed since the previous frame (of the same size).

    Attributes:
        last: the latest value, or None before the second frame.
        mean: mean over all frame pairs so far, or None.
    """

    def __init__(self) -> None:
        self._prev: np.ndarray | None = None
        self._sum = 0.0
        self._n = 0
        self.last: float | None = None

    def update(self, class_ids: np.ndarray) -> float | None:
        if self._prev is not None and self._prev.shape == class_ids.shape:
            self.last = float(np.count_nonzero(self._prev != class_ids)) / class_ids.size
            self._sum += self.last
            self._n += 1
        else:
            self.last = None
        self._prev = class_ids.copy()
        return self.last

    @property
    def mean(self) -> float | None:
        return self._sum / self._n if self._n else None


# --- pre/post-processors and the runner -----------------------------------------------------------


@dataclass(frozen=True)
class PreprocessInfo:
    """What postprocess needs to undo preprocess: frame size, model input size and, where the
    input was padded, the top-left part of it that holds the frame, (H, W) px."""

    frame_hw: tuple[int, int]
    model_hw: tuple[int, int]
    content_hw: tuple[int, int] | None = None


@dataclass(frozen=True)
class SemanticSettings:
    """Runtime settings of the road-semantics stage, read from the artifact plus config.

    Attributes:
        class_names / palette_bgr / mean / std / color_order: from the artifact.
        size_policy: from the artifact, or "fixed" at ``input_size_hw`` when config sets one.
        input_name / output_name: graph tensor names. labels_output: the graph's (1, h, w)
            uint8 argmax output where it has one (used when nothing needs the logits).
        smoothing: "off", "ema" or "hysteresis". ema_alpha / hysteresis_frames: their settings.
        drivable: compute the drivable mask; drivable_classes: names that count as drivable.
        keep_probabilities: put the (C, h, w) softmax into the SemanticMap (costs memory).
    """

    class_names: tuple[str, ...]
    palette_bgr: np.ndarray
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_order: str = "RGB"
    size_policy: SizePolicy = field(default_factory=SizePolicy)
    input_name: str = "image"
    output_name: str = "logits"
    labels_output: str | None = None
    smoothing: str = "off"
    ema_alpha: float = 0.6
    hysteresis_frames: int = 3
    drivable: bool = True
    drivable_classes: tuple[str, ...] = ("road",)
    keep_probabilities: bool = False

    def __post_init__(self) -> None:
        if self.smoothing not in ("off", "ema", "hysteresis"):
            raise ConfigError(f"smoothing must be off, ema or hysteresis, got {self.smoothing!r}")

    @classmethod
    def from_metadata(cls, metadata, *, input_size_hw=None, **overrides) -> SemanticSettings:
        """Settings from an ``ArtifactMetadata`` (task "semantic"); ``input_size_hw`` overrides
        the artifact's size policy; other keywords override fields."""
        if metadata is None:
            raise ModelError("the artifact has no segstream metadata; export it with 'segstream export'")
        if metadata.task != "semantic":
            raise ModelError(f"{metadata.model}: a {metadata.task!r} artifact where a 'semantic' one is needed")
        extra = metadata.extra or {}
        policy = SizePolicy.from_dict(extra.get("size_policy"))
        fixed = (
            None
            if metadata.input_size_hw is None
            else cast("tuple[int, int]", tuple(int(v) for v in metadata.input_size_hw))
        )
        if input_size_hw:
            wanted = (int(input_size_hw[0]), int(input_size_hw[1]))
            if fixed is not None and wanted != fixed:
                raise ConfigError(
                    f"{metadata.model}: the artifact takes {fixed[0]}x{fixed[1]} only, input size "
                    f"{wanted[0]}x{wanted[1]} asked for; drop the input size or export with --dynamic"
                )
            policy = SizePolicy(kind="fixed", size_hw=wanted, pad_multiple=policy.pad_multiple)
        elif fixed is not None:
            policy = SizePolicy(kind="fixed", size_hw=fixed, pad_multiple=policy.pad_multiple)
        names = tuple(metadata.class_names)
        palette = (
            np.asarray(metadata.palette_bgr, np.uint8).reshape(-1, 3)
            if metadata.palette_bgr
            else default_palette_bgr(len(names))
        )
        if len(palette) != len(names):
            raise ModelError(
                f"{metadata.model}: {len(palette)} palette colours for {len(names)} classes; re-export the model"
            )
        return cls(
            class_names=names,
            palette_bgr=palette,
            mean=tuple(metadata.mean),
            std=tuple(metadata.std),
            color_order=metadata.color_order,
            size_policy=policy,
            input_name=extra.get("input_name", "image"),
            output_name=extra.get("output_name", "logits"),
            labels_output=extra.get("labels_output"),
            **overrides,
        )


class SemanticPreprocessor:
    """image_bgr -> ({input_name: (1, 3, h, w) float32}, PreprocessInfo). Stateless."""

    def __init__(self, settings: SemanticSettings) -> None:
        self.settings = settings

    def __call__(self, image_bgr: np.ndarray) -> tuple[dict[str, np.ndarray], PreprocessInfo]:
        s = self.settings
        frame_hw = (int(image_bgr.shape[0]), int(image_bgr.shape[1]))
        resized_hw = s.size_policy.model_size(frame_hw)
        x = preprocess_image(image_bgr, size_hw=resized_hw, mean=s.mean, std=s.std, color_order=s.color_order)
        model_hw = s.size_policy.padded_size(resized_hw)
        if model_hw == resized_hw:
            return {s.input_name: x}, PreprocessInfo(frame_hw=frame_hw, model_hw=model_hw)
        x = np.pad(x, ((0, 0), (0, 0), (0, model_hw[0] - resized_hw[0]), (0, model_hw[1] - resized_hw[1])))
        return {s.input_name: x}, PreprocessInfo(frame_hw=frame_hw, model_hw=model_hw, content_hw=resized_hw)


class SemanticPostprocessor:
    """(outputs, PreprocessInfo) -> SemanticMap, with optional smoothing and flicker.

    Stateful when smoothing is on: feed it the frames of one source in order (one worker).

    Attributes:
        flicker: FlickerMeter over the returned class maps.
    """

    def __init__(self, settings: SemanticSettings) -> None:
        self.settings = settings
        self.flicker = FlickerMeter()
        self._ema = EmaSmoother(settings.ema_alpha) if settings.smoothing == "ema" else None
        self._hyst = LabelHysteresis(settings.hysteresis_frames) if settings.smoothing == "hysteresis" else None
        names = settings.class_names
        self._drivable_ids = tuple(i for i, n in enumerate(names) if n in settings.drivable_classes)

    def reset(self) -> None:
        """Forget the temporal state (scene cut, new source)."""
        for s in (self._ema, self._hyst):
            if s is not None:
                s.reset()
        self.flicker = FlickerMeter()

    def _graph_labels(self, outputs: dict[str, np.ndarray], hw: tuple[int, ...]) -> np.ndarray | None:
        """The artifact's own argmax output, (h, w) uint8, or None where it has none."""
        name = self.settings.labels_output
        labels = outputs.get(name) if name else None
        if labels is None:
            return None
        if labels.shape != (1, *hw) or labels.dtype != np.uint8:
            raise ModelError(
                f"expected {name!r} (1, {hw[0]}, {hw[1]}) uint8 next to the logits, got "
                f"{tuple(labels.shape)} {labels.dtype}; re-export the model"
            )
        return labels[0]

    def __call__(self, outputs: dict[str, np.ndarray], info: PreprocessInfo) -> SemanticMap:
        s = self.settings
        logits = outputs.get(s.output_name)
        if logits is None:
            raise ModelError(f"the model gave outputs {sorted(outputs)}, expected {s.output_name!r}")
        if logits.ndim != 4 or logits.shape[0] != 1 or logits.shape[1] != len(s.class_names):
            raise ModelError(f"expected logits (1, {len(s.class_names)}, h, w), got {tuple(logits.shape)}")
        probs = None
        if self._ema is not None or s.keep_probabilities:
            probs = softmax(logits[0])
            if self._ema is not None:
                probs = self._ema.update(probs)
            labels = np.argmax(probs, axis=0).astype(np.uint8)
        else:
            labels = self._graph_labels(outputs, logits.shape[2:])
            if labels is None:
                labels = np.argmax(logits[0], axis=0).astype(np.uint8)
        if info.content_hw is not None:  # the input was padded: keep the part that holds the frame
            ch, cw = info.content_hw
            labels = np.ascontiguousarray(labels[:ch, :cw])
            probs = None if probs is None else probs[:, :ch, :cw]
        if self._hyst is not None:
            labels = self._hyst.update(labels)
        class_ids = resize_labels(labels, info.frame_hw)
        # Flicker and free space at model resolution, then resized like the labels: the same
        # answer at a fraction of the cost of full-frame connected components.
        self.flicker.update(labels)
        mask = None
        if s.drivable and self._drivable_ids:
            small = drivable_mask(labels, self._drivable_ids).astype(np.uint8)
            mask = resize_labels(small, info.frame_hw).astype(bool)
        return SemanticMap(
            class_ids=class_ids,
            class_names=s.class_names,
            palette_bgr=s.palette_bgr,
            probabilities=probs if s.keep_probabilities else None,
            drivable_mask=mask,
        )


class SemanticRunner:
    """One frame in, one SemanticMap out: preprocess, backend, postprocess. No threads.

    Args:
        backend: any ``Backend`` (ONNX Runtime, TensorRT, or the torch one from models/).
        settings: None to read them from ``backend.metadata`` with ``**overrides``
            (``input_size_hw``, ``smoothing``, ``ema_alpha``, ``drivable``, ...).
    """

    def __init__(self, backend, settings: SemanticSettings | None = None, **overrides) -> None:
        self.backend = backend
        self.settings = settings or SemanticSettings.from_metadata(backend.metadata, **overrides)
        self.preprocess = SemanticPreprocessor(self.settings)
        self.postprocess = SemanticPostprocessor(self.settings)

    @property
    def flicker(self) -> FlickerMeter:
        return self.postprocess.flicker

    def __call__(self, image_bgr: np.ndarray) -> SemanticMap:
        feeds, info = self.preprocess(image_bgr)
        return self.postprocess(self.backend.run(feeds), info)

    def close(self) -> None:
        self.backend.close()


def colorize(class_ids: np.ndarray, palette_bgr: np.ndarray) -> np.ndarray:
    """(H, W) uint8 ids -> (H, W, 3) uint8 BGR; ids without a colour (255) come out black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette_bgr)] = palette_bgr
    return lut[class_ids]


def render_overlay(image_bgr: np.ndarray, sem: SemanticMap, alpha: float = 0.5) -> np.ndarray:
    """The class colours blended over a copy of the image, drivable area outlined in green."""
    palette = sem.palette_bgr if sem.palette_bgr is not None else default_palette_bgr(len(sem.class_names))
    out = cv2.addWeighted(colorize(sem.class_ids, palette), alpha, image_bgr, 1 - alpha, 0)
    if sem.drivable_mask is not None and sem.drivable_mask.any():
        contours, _ = cv2.findContours(sem.drivable_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (60, 220, 60), 2)
    return out
