import numpy as np
import pytest

from segstream.pipelines.tasks.masks import mask_polygons, rle_decode, rle_encode


def _masks():
    rng = np.random.default_rng(0)
    yield np.zeros((5, 7), bool)
    yield np.ones((5, 7), bool)
    m = np.zeros((40, 60), bool)
    m[5:20, 10:50] = True
    yield m
    for _ in range(5):
        yield rng.random((33, 47)) > 0.5
    big = np.zeros((720, 1280), bool)
    big[100:600, 200:1100] = True
    big[300:320, :] = False
    yield big


@pytest.mark.parametrize("mask", list(_masks()))
def test_rle_round_trip_and_matches_pycocotools(mask):
    rle = rle_encode(mask)
    assert rle["size"] == list(mask.shape)
    assert np.array_equal(rle_decode(rle), mask)
    mask_util = pytest.importorskip("pycocotools.mask")
    ref = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert rle["counts"] == ref["counts"].decode()
    assert np.array_equal(mask_util.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool), mask)


def test_polygons_of_a_rectangle():
    m = np.zeros((50, 50), bool)
    m[10:20, 5:30] = True
    polys = mask_polygons(m)
    assert len(polys) == 1
    xs, ys = zip(*polys[0])
    assert (min(xs), max(xs), min(ys), max(ys)) == (5, 29, 10, 19)
