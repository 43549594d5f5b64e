"""Tiled inference over images larger than the model input: an overlapping tile grid, and
blending of per-tile class scores with a window that fades towards tile edges, so the stitched
map has no seams.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from stream.sources.tiles import Tile, tile_grid  # the grid is the tile source's geometry

__all__ = ["Tile", "TileStitcher", "blend_window", "predict_tiled", "tile_grid"]


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
            r[n - k:] = edge[::-1]
        return r

    return np.outer(ramp(th), ramp(tw))


def predict_tiled(image: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], tile_hw: tuple[int, int],
                  overlap: int = 64) -> np.ndarray:
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
        scores = predict(image[t.y0:t.y1, t.x0:t.x1])
        th, tw = t.y1 - t.y0, t.x1 - t.x0
        if scores.ndim != 3 or scores.shape[1:] != (th, tw):
            raise ValueError(f"predict must return (K, {th}, {tw}) scores for a {th}x{tw} tile, got {scores.shape}")
        if acc is None:
            acc = np.zeros((scores.shape[0], h, w), np.float32)
        win = blend_window((th, tw), overlap)
        acc[:, t.y0:t.y1, t.x0:t.x1] += scores * win
        weight[t.y0:t.y1, t.x0:t.x1] += win
    assert acc is not None
    return acc / weight[None]


class TileStitcher:
    """Blends per-tile class scores into the full class map as tiles arrive in grid order.

    Scores are kept only for the rows some later tile still covers (a band about one tile
    high), so memory is ``K x tile height x W`` float32 plus the (H, W) uint8 class map,
    whatever the height of the map. Rows no later tile touches are final: their argmax of the
    blended scores goes into ``class_ids`` (the blend's normalisation does not change the argmax).
    The result equals ``argmax(predict_tiled(...))``; rows not final yet are 255 in ``class_ids``.

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

    @property
    def complete(self) -> bool:
        return self._next == len(self.tiles)

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
            raise ValueError(f"expected ({self.num_classes}, {th}, {tw}) scores for tile {tile.index}, got {scores.shape}")
        band_y0 = self.rows_done
        if tile.y1 - band_y0 > self._acc.shape[1]:
            grow = np.zeros((self.num_classes, tile.y1 - band_y0 - self._acc.shape[1], self.size_hw[1]), np.float32)
            self._acc = np.concatenate([self._acc, grow], axis=1)
        self._acc[:, tile.y0 - band_y0:tile.y1 - band_y0, tile.x0:tile.x1] += scores * blend_window((th, tw), self.overlap)
        self._next += 1
        final_to = self.size_hw[0] if self.complete else self.tiles[self._next].y0
        if final_to > band_y0:
            rows = final_to - band_y0
            self.class_ids[band_y0:final_to] = np.argmax(self._acc[:, :rows], axis=0).astype(np.uint8)
            self._acc = self._acc[:, rows:].copy()
            self.rows_done = final_to
        return band_y0, self.rows_done
