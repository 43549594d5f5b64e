import numpy as np
import pytest

from pipelines.areas import class_areas, class_geojson, series_volumes
from pipelines.tiling import blend_window, predict_tiled, tile_grid


@pytest.mark.parametrize("size, tile, overlap", [((100, 100), (32, 32), 8), ((70, 300), (64, 64), 16), ((20, 20), (64, 64), 4)])
def test_tile_grid_covers_the_image_with_full_tiles(size, tile, overlap):
    tiles = tile_grid(size, tile, overlap)
    cover = np.zeros(size, int)
    for t in tiles:
        assert t.y1 - t.y0 == min(tile[0], size[0]) and t.x1 - t.x0 == min(tile[1], size[1])
        cover[t.y0:t.y1, t.x0:t.x1] += 1
    assert cover.min() >= 1


def test_tiled_prediction_of_a_position_independent_model_has_no_seams():
    rng = np.random.default_rng(0)
    img = rng.random((150, 230, 3)).astype(np.float32)

    def predict(tile):  # per-pixel model: tiling must reproduce it exactly
        return np.stack([tile[..., 0], tile[..., 1] * 2])

    out = predict_tiled(img, predict, (64, 64), overlap=16)
    assert np.allclose(out, predict(img), atol=1e-5)


def test_blend_window_is_positive_and_peaks_inside():
    w = blend_window((32, 48), 8)
    assert w.min() > 0 and w[16, 24] == 1.0 and w[0, 0] < w[4, 4]


def test_areas_geojson_and_volumes():
    ids = np.zeros((10, 20), np.uint8)
    ids[2:6, 3:13] = 1  # 4 x 10 = 40 px
    areas = class_areas(ids, ("background", "building"), pixel_area=0.25)
    assert areas == {"background": 160 * 0.25, "building": 40 * 0.25}
    gj = class_geojson(ids, ("background", "building"), geotransform=(1000.0, 0.5, 0, 2000.0, 0, -0.5), skip=(0,))
    assert len(gj["features"]) == 1
    ring = gj["features"][0]["geometry"]["coordinates"][0]
    xs, ys = zip(*ring)
    assert min(xs) == 1000.0 + 3 * 0.5 and max(ys) == 2000.0 - 2 * 0.5
    vol = series_volumes([{"tumour": 10.0}, {"tumour": 12.0, "organ": 5.0}], slice_thickness_mm=2.5)
    assert vol == {"tumour": 55.0, "organ": 12.5}
