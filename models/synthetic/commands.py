"""`segstream generate`: write synthetic road scenes or a clip with ground truth, or measurement
data with known areas and volumes (`phantoms`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segstream.models.synthetic.dataset import write_clip, write_image_set
from segstream.models.synthetic.phantoms import PhantomResult
from segstream.models.synthetic.scene import SceneConfig, SceneSequence, generate_scene


@dataclass(frozen=True)
class GenerateOptions:
    """What `segstream generate` writes.

    Attributes:
        out: output folder.
        kind: "images" or "video" (road scenes, `generate`); "slices" or "tiles" (`generate_measured`).
        count: images, frames of the clip, or slices (>= 1).
        width / height: pixels. seed: the scenes' seed.
        fps: frames per second of a clip; also the time step between frames.
        min_visible_pixels: smaller objects are ignored (255 in the labels, no annotation); see
            `models.synthetic.scene`. None: `SceneConfig`'s default (64).
    """

    out: str
    kind: str = "images"
    count: int = 100
    width: int = 1280
    height: int = 720
    seed: int = 0
    fps: float = 30.0
    min_visible_pixels: int | None = None


@dataclass(frozen=True)
class GenerateResult:
    """What `generate` wrote.

    Attributes:
        out: the output folder.
        main_file: instances.json (images) or clip.mp4 (video).
        count: number of images or frames.
    """

    out: Path
    main_file: Path
    count: int


def generate(args: GenerateOptions) -> GenerateResult:
    """Generate road scenes: an image set or a clip (`args.kind` "images" or "video").

    Returns:
        A `GenerateResult`. Image i of an image set is `generate_scene((seed, i))`; a clip is
        `SceneSequence(seed)` frames 0..count-1.
    """
    if args.kind not in ("images", "video"):
        raise ValueError(f"expected kind 'images' or 'video', got {args.kind!r}")
    if args.count < 1:
        raise ValueError(f"expected count >= 1, got {args.count}")
    min_visible = args.min_visible_pixels or SceneConfig.min_visible_pixels
    config = SceneConfig(
        width=int(args.width), height=int(args.height), fps=float(args.fps), min_visible_pixels=int(min_visible)
    )
    out = Path(args.out)
    if args.kind == "images":
        samples = (generate_scene((int(args.seed), i), config) for i in range(args.count))
        main = write_image_set(samples, out)
    else:
        sequence = SceneSequence(int(args.seed), config)
        main = write_clip((sequence.next_sample() for _ in range(args.count)), out, config.fps)
    return GenerateResult(out, main, int(args.count))


def generate_measured(args: GenerateOptions) -> PhantomResult:
    """Measurement data for the medical (``kind`` "slices") or satellite ("tiles") pipeline.

    Args:
        args: `out`, `kind`, `count` (slices), `width`, `height` and `seed` are used.

    Returns:
        What `models.synthetic.phantoms.write_slices` or `write_map` wrote.
    """
    from segstream.models.synthetic.phantoms import write_map, write_slices

    size_hw = (int(args.height), int(args.width))
    if args.kind == "slices":
        return write_slices(str(args.out), count=int(args.count), size_hw=size_hw, seed=int(args.seed))
    if args.kind == "tiles":
        return write_map(str(args.out), size_hw=size_hw, seed=int(args.seed))
    raise ValueError(f"expected kind 'slices' or 'tiles', got {args.kind!r}")
