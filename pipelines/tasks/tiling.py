"""Tiled inference over images larger than the model input: an overlapping tile grid, and
blending of per-tile class scores with a window that fades towards tile edges, so the stitched
map has no seams; and a check for the seams a model leaves when the overlap is too small.

Blending hands over from one tile to the next in the middle of their overlap, where both weigh
the same. A model whose output depends on where a pixel sits in its input (zero padding, a wide
receptive field, global pooling, a layout prior such as "sky at the top") answers differently
near a tile's border; when that border effect reaches the middle of the overlap from both sides
the two tiles disagree there, and the map changes class along a straight line. Only a wider
overlap removes that (measured in the README: the shape of the window does not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from segstream.stream.sources.tiles import Tile, tile_grid  # the grid is the tile source's geometry

__all__ = ["SeamCheck", "Tile", "TileStitcher", "blend_window", "predict_tiled", "seam_check", "tile_grid"]

#: a seam is reported when the middle line of an overlap changes class on this fraction of its
#: pixels more than the lines around it do ...
SEAM_EXCESS = 0.02
#: ... and neighbouring tiles, each by its own argmax, disagree on at least this fraction of the
#: middle lines' pixels (0 for a model that looks at each pixel alone, whatever the content).
SEAM_DISAGREEMENT = 0.05


def blend_window(tile_hw: tuple[int, int], overlap: int) -> np.ndarray:
    """(th, tw) float32 weights: 1 in the middle, a linear ramp over ``overlap`` pixels at the edges.

    Weights never reach 0 so image borders (covered by one tile only) keep full weight after
    normalisation.
    """
    th, tw = tile_hw

    def ramp(n: int) -> np.ndarray:
        r = np.ones(n, np.float32)
        k = min(overlap, n // 2)
        if k > 0:
            edge = (np.arange(k, dtype=np.float32) + 1) / (k + 1)
            r[:k] = edge
            r[n - k :] = edge[::-1]
        return r

    return np.outer(ramp(th), ramp(tw))


def predict_tiled(
    image: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], tile_hw: tuple[int, int], overlap: int = 64
) -> np.ndarray:
    """Runs ``predict`` on each tile and blends the class scores.

    Args:
        image: (H, W, C) image.
        predict: tile (th, tw, C) -> (K, th, tw) float32 class scores (probabilities or logits).
        tile_hw: tile size (the model's input size).
        overlap: pixels shared by neighbouring tiles.

    Returns:
        (K, H, W) float32 blended scores.
    """
    h, w = image.shape[:2]
    tiles = tile_grid((h, w), tile_hw, overlap)
    acc: np.ndarray | None = None
    weight = np.zeros((h, w), np.float32)
    for t in tiles:
        scores = predict(image[t.y0 : t.y1, t.x0 : t.x1])
        th, tw = t.y1 - t.y0, t.x1 - t.x0
        if scores.ndim != 3 or scores.shape[1:] != (th, tw):
            raise ValueError(f"predict must return (K, {th}, {tw}) scores for a {th}x{tw} tile, got {scores.shape}")
        if acc is None:
            acc = np.zeros((scores.shape[0], h, w), np.float32)
        win = blend_window((th, tw), overlap)
        acc[:, t.y0 : t.y1, t.x0 : t.x1] += scores * win
        weight[t.y0 : t.y1, t.x0 : t.x1] += win
    assert acc is not None
    return acc / weight[None]


class TileStitcher:
    """Blends per-tile class scores into the full class map as tiles arrive in grid order.

    Scores are kept only for the rows some later tile still covers (a band about one tile
    high), so memory is ``K x tile height x W`` float32 plus the (H, W) uint8 class map,
    whatever the height of the map. Rows no later tile touches are final: their argmax of the
    blended scores goes into ``class_ids`` (the blend's normalisation does not change the argmax).
    The result equals ``argmax(predict_tiled(...))``; rows not final yet are 255 in ``class_ids``.

    It also counts how often neighbouring tiles disagree, each by its own argmax, on the middle
    line of their overlap, where the blend hands over (``disagreement``): 0 for a model that
    looks at each pixel alone, and the more its output depends on the position in its input,
    the higher.

    Args:
        size_hw: (H, W) of the full map.
        tile_hw / overlap: the grid, as ``tile_grid`` builds it.
        num_classes: K.
    """

    def __init__(self, size_hw: tuple[int, int], tile_hw: tuple[int, int], overlap: int, num_classes: int) -> None:
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))
        self.overlap = int(overlap)
        self.tiles = tile_grid(self.size_hw, tile_hw, overlap)
        self.num_classes = int(num_classes)
        self.class_ids = np.full(self.size_hw, 255, np.uint8)
        self.rows_done = 0
        self._acc = np.zeros((self.num_classes, 0, self.size_hw[1]), np.float32)
        self._next = 0
        ys, xs = sorted({t.y0 for t in self.tiles}), sorted({t.x0 for t in self.tiles})
        self._next_y, self._prev_y = dict(zip(ys, ys[1:])), dict(zip(ys[1:], ys))
        self._next_x, self._prev_x = dict(zip(xs, xs[1:])), dict(zip(xs[1:], xs))
        self._handover: dict[tuple[str, int, int], np.ndarray] = {}  # a tile's argmax on a middle line
        self._compared = 0
        self._disagreed = 0

    @property
    def disagreement(self) -> float | None:
        """Fraction of the overlaps' middle-line pixels on which the two tiles' own argmax
        differed (None before any pair was compared)."""
        return self._disagreed / self._compared if self._compared else None

    @property
    def complete(self) -> bool:
        return self._next == len(self.tiles)

    @property
    def tiles_done(self) -> int:
        """Tiles added so far."""
        return self._next

    def add(self, tile: Tile, scores: np.ndarray) -> tuple[int, int]:
        """Adds one tile's (K, th, tw) scores; returns the rows (y0, y1) this made final.

        Raises:
            ValueError: a tile out of grid order, a window unlike the grid's, or scores of the
                wrong shape.
        """
        if self.complete or tile != self.tiles[self._next]:
            want = "no more tiles" if self.complete else f"tile {self.tiles[self._next]}"
            raise ValueError(f"got tile {tile}, expected {want}: tiles must arrive in grid order")
        th, tw = tile.y1 - tile.y0, tile.x1 - tile.x0
        if scores.shape != (self.num_classes, th, tw):
            raise ValueError(
                f"expected ({self.num_classes}, {th}, {tw}) scores for tile {tile.index}, got {scores.shape}"
            )
        self._compare_handover(tile, scores)
        band_y0 = self.rows_done
        if tile.y1 - band_y0 > self._acc.shape[1]:
            grow = np.zeros((self.num_classes, tile.y1 - band_y0 - self._acc.shape[1], self.size_hw[1]), np.float32)
            self._acc = np.concatenate([self._acc, grow], axis=1)
        self._acc[:, tile.y0 - band_y0 : tile.y1 - band_y0, tile.x0 : tile.x1] += scores * blend_window(
            (th, tw), self.overlap
        )
        self._next += 1
        final_to = self.size_hw[0] if self.complete else self.tiles[self._next].y0
        if final_to > band_y0:
            rows = final_to - band_y0
            self.class_ids[band_y0:final_to] = np.argmax(self._acc[:, :rows], axis=0).astype(np.uint8)
            self._acc = self._acc[:, rows:].copy()
            self.rows_done = final_to
        return band_y0, self.rows_done

    def _compare_handover(self, tile: Tile, scores: np.ndarray) -> None:
        """Compares the tile's argmax with its upper and left neighbours' on the middle lines of
        their overlaps, and keeps its own for the neighbours below and to the right."""
        th, tw = tile.y1 - tile.y0, tile.x1 - tile.x0
        lines = []
        for kind, start, size, other, prev, nxt in (
            ("row", tile.y0, th, tile.x0, self._prev_y, self._next_y),
            ("col", tile.x0, tw, tile.y0, self._prev_x, self._next_x),
        ):
            if start in prev and prev[start] + size > start:  # the tile above / to the left
                lines.append((kind, (start + prev[start] + size) // 2, other, "mine"))
            if start in nxt and nxt[start] < start + size:  # the tile below / to the right
                lines.append((kind, (nxt[start] + start + size) // 2, other, "keep"))
        for kind, mid, other, role in lines:
            part = scores[:, mid - tile.y0, :] if kind == "row" else scores[:, :, mid - tile.x0]
            labels = np.argmax(part, axis=0)
            if role == "keep":
                self._handover[(kind, mid, other)] = labels
                continue
            theirs = self._handover.pop((kind, mid, other), None)
            if theirs is not None:
                self._compared += labels.size
                self._disagreed += int(np.count_nonzero(labels != theirs))


@dataclass(frozen=True)
class SeamCheck:
    """How much the middle lines of tile overlaps stand out in a stitched class map.

    Attributes:
        lines: overlap middle lines checked (rows and columns).
        worst_line: the one that stands out most, e.g. "row 480" (the line between rows 479
            and 480).
        change: fraction of that line's pixels whose class differs across it.
        nearby: the same, averaged over the parallel lines around it (what the content gives).
        disagreement: ``TileStitcher.disagreement``, where known.
    """

    lines: int
    worst_line: str
    change: float
    nearby: float
    disagreement: float | None = None

    @property
    def excess(self) -> float:
        """Class changes on the worst middle line beyond what the lines around it show."""
        return self.change - self.nearby

    @property
    def seam(self) -> bool:
        """A line that stands out, and tiles that disagree where they hand over (content alone,
        an edge running along the line, does not make the tiles disagree)."""
        return self.excess >= SEAM_EXCESS and (self.disagreement is None or self.disagreement >= SEAM_DISAGREEMENT)

    def to_json_dict(self) -> dict:
        return {
            "lines": self.lines,
            "worst_line": self.worst_line,
            "change": round(self.change, 4),
            "nearby": round(self.nearby, 4),
            "tile_disagreement": None if self.disagreement is None else round(self.disagreement, 4),
            "seam": self.seam,
        }


def seam_check(class_ids: np.ndarray, tiles: list[Tile], disagreement: float | None = None) -> SeamCheck | None:
    """Compares class changes across the middle line of every overlap with the parallel lines
    around it (up to half the overlap away, the two lines next to it left out).

    A straight seam (neighbouring tiles that disagree hand over in the middle of their overlap)
    shows as a middle line that changes class far more often than its neighbours; real edges
    rarely run along one pixel line for long. It does not see a band that two tiles get wrong
    alike; a wide enough overlap prevents both.

    Args:
        class_ids: (H, W) stitched class map.
        tiles: the grid it was stitched from.
        disagreement: the stitcher's ``disagreement``, carried into the result.

    Returns:
        The line that stands out most, or None without overlaps (one tile, or none).
    """
    if not tiles:
        return None
    found: list[tuple[float, str, float, float]] = []
    for axis, size, starts in (
        (0, tiles[0].y1 - tiles[0].y0, sorted({t.y0 for t in tiles})),
        (1, tiles[0].x1 - tiles[0].x0, sorted({t.x0 for t in tiles})),
    ):
        ids = class_ids if axis == 0 else class_ids.T
        length = ids.shape[0]

        def change(line: int) -> float:  # between rows line-1 and line of ``ids``
            return float(np.count_nonzero(ids[line - 1] != ids[line])) / ids.shape[1]

        for a, b in zip(starts, starts[1:]):
            if a + size <= b:
                continue
            mid = (b + a + size) // 2
            reach = max(8, (a + size - b) // 2)
            around = [change(k) for k in range(mid - reach, mid + reach + 1) if abs(k - mid) > 1 and 0 < k < length]
            nearby = float(np.mean(around)) if around else 0.0
            rate = change(mid)
            found.append((rate - nearby, f"{'row' if axis == 0 else 'column'} {mid}", rate, nearby))
    if not found:
        return None
    _, line, rate, nearby = max(found)
    return SeamCheck(len(found), line, rate, nearby, disagreement)
