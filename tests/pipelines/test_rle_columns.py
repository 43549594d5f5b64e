"""COCO RLE scans only the mask's columns: the same counts as a full column-major scan."""

import numpy as np
import pytest

from segstream.pipelines.tasks.masks import _counts_to_string, rle_decode, rle_encode


def _full_scan(mask):
    flat = mask.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], change, [flat.size]))).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return {"size": list(mask.shape), "counts": _counts_to_string(counts)}


def _shapes():
    h, w = 37, 53
    yield np.zeros((h, w), bool)
    yield np.ones((h, w), bool)
    m = np.zeros((h, w), bool)
    m[0, 0] = True
    yield m  # noqa: E702
    m = np.zeros((h, w), bool)
    m[-1, -1] = True
    yield m  # noqa: E702
    m = np.zeros((h, w), bool)
    m[:, 10] = True
    yield m  # noqa: E702  one full column
    m = np.zeros((h, w), bool)
    m[5:30, 20:40] = True
    m[10:20, 25:35] = False
    yield m  # noqa: E702  ring
    m = np.zeros((h, w), bool)
    m[:, -3:] = True
    yield m  # noqa: E702  touching the right border
    rng = np.random.default_rng(0)
    for _ in range(20):
        yield rng.random((h, w)) < rng.random()


@pytest.mark.parametrize("mask", list(_shapes()))
def test_column_scan_equals_full_scan(mask):
    rle = rle_encode(mask)
    assert rle == _full_scan(mask)
    assert np.array_equal(rle_decode(rle), mask)
