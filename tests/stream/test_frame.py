import re

import numpy as np
import pytest

from segstream.stream.frame import Frame


def _frame(img=None):
    img = np.zeros((4, 6, 3), np.uint8) if img is None else img
    return Frame(source_id="s", seq=3, pts_s=0.1, capture_ns=1, image_bgr=img)


@pytest.mark.parametrize(
    "img, message",
    [
        (np.zeros((4, 6), np.uint8), "expected (H, W, 3) uint8"),
        (np.zeros((4, 6, 4), np.uint8), "expected (H, W, 3) uint8"),
        (np.zeros((4, 6, 3), np.float32), "expected (H, W, 3) uint8"),
        (np.zeros((0, 6, 3), np.uint8), "non-empty"),
    ],
)
def test_frame_rejects_bad_images(img, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _frame(img)


def test_branch_copy_shares_image_but_not_results():
    f = _frame()
    f.results["a"] = 1
    c = f.branch_copy()
    c.results["b"] = 2
    c.timings_ms["x"] = 1.0
    assert c.image_bgr is f.image_bgr
    assert "b" not in f.results and "x" not in f.timings_ms
    assert c.key == f.key == ("s", 3)


def test_display_prefers_overlay():
    f = _frame()
    assert f.display_bgr() is f.image_bgr
    f.overlay_bgr = np.ones_like(f.image_bgr)
    assert f.display_bgr() is f.overlay_bgr
