"""Tiled inference over images larger than the model input: an overlapping tile grid, and
blending of per-tile class scores with a window that fades towards tile edges, so the stitched
map has no seams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Tile:
    """One tile: its index in the grid and its window in image pixels (y0:y1, x0:x1)."""

    index: int
    y0: int
    x0: int
    y1: int
    x1: int


def tile_grid(size_hw: tuple[int, int], tile_hw: tuple[int, int], overlap: int) -> list[Tile]:
    """Tiles of ``tile_hw`` covering an image, consecutive tiles overlapping by at least ``overlap``.

    Tiles are never larger than the image; the last row/column is shifted inwards so every tile
    is full-sized (when the image is at least one tile large).
    """
    h, w = size_hw
    th, tw = min(tile_hw[0], h), min(tile_hw[1], w)
    if overlap < 0 or overlap >= min(th, tw):
        raise ValueError(f"overlap must be in [0, {min(th, tw)}), got {overlap}")

    def starts(total: int, size: int) -> list[int]:
        if size >= total:
            return [0]
        step = size - overlap
        out = list(range(0, total - size, step))
        out.append(total - size)
        return sorted(set(out))

    tiles = []
    for y in starts(h, th):
        for x in starts(w, tw):
            tiles.append(Tile(len(tiles), y, x, y + th, x + tw))
    return tiles


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
