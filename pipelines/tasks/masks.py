"""Mask encodings for results: COCO run-length encoding (compressed string form, as
pycocotools writes it) and polygons, in numpy/OpenCV only."""

from __future__ import annotations

import cv2
import numpy as np


def bilinear_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source taps of torch's bilinear resize (align_corners=False, no antialias) for one axis,
    in float32 as torch computes them.

    Returns:
        i0, i1 (out_size,) int64 source indices and l1 (out_size,) float32 weight of i1.
    """
    scale = np.float32(in_size / out_size)
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.maximum(src, np.float32(0))
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    l1 = (src - i0).astype(np.float32)
    return i0, i1, l1


def bilinear_matrix(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(out_size, in_size) float32 matrix M of torch's bilinear resize along one axis (a resized
    image is ``My @ img @ Mx.T``), with its tap indices i0, i1 (see ``bilinear_taps``)."""
    i0, i1, l1 = bilinear_taps(out_size, in_size)
    m = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(m, (rows, i0), 1 - l1)
    np.add.at(m, (rows, i1), l1)
    return m, i0, i1


def rle_encode(mask: np.ndarray) -> dict:
    """COCO RLE of a binary mask.

    Args:
        mask: (H, W) bool or 0/1 array.

    Returns:
        {"size": [H, W], "counts": str}: column-major runs starting with zeros, compressed
        exactly as pycocotools' ``rleToString`` (decodable by ``pycocotools.mask.decode``).
    """
    if mask.ndim != 2:
        raise ValueError(f"mask: expected (H, W), got {mask.shape}")
    h, w = mask.shape
    if h * w == 0:
        return {"size": [h, w], "counts": ""}
    # Only the columns that hold the object are scanned (an instance mask is mostly empty): in
    # column-major order they are one contiguous stretch, with zeros before and after it.
    cols = np.flatnonzero(np.asarray(mask, dtype=bool).any(axis=0))
    if len(cols) == 0:
        return {"size": [h, w], "counts": _counts_to_string([h * w])}
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    flat = np.asarray(mask[:, x0:x1], dtype=bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts.insert(0, 0)
    counts[0] += x0 * h
    after = (w - x1) * h
    if after:
        if flat[-1]:
            counts.append(after)
        else:
            counts[-1] += after
    return {"size": [h, w], "counts": _counts_to_string(counts)}


def _counts_to_string(counts: list[int]) -> str:
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def _string_to_counts(s: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(s):
        x = 0
        k = 0
        more = True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_decode(rle: dict) -> np.ndarray:
    """The (H, W) bool mask of a COCO RLE (compressed string or list of counts)."""
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = _string_to_counts(counts)
    flat = np.zeros(h * w, dtype=bool)
    pos = 0
    value = False
    for c in counts:
        if value:
            flat[pos : pos + c] = True
        pos += c
        value = not value
    return flat.reshape((w, h)).T


def mask_polygons(mask: np.ndarray, epsilon_px: float = 1.5, min_area_px: float = 4.0) -> list[list[list[int]]]:
    """Outer contours of a binary mask as polygons [[x, y], ...], simplified by ``epsilon_px``."""
    contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        if cv2.contourArea(c) < min_area_px:
            continue
        approx = cv2.approxPolyDP(c, epsilon_px, True)
        polys.append(approx.reshape(-1, 2).astype(int).tolist())
    return polys
