import numpy as np
import pytest

from segstream.pipelines.tasks.areas import class_areas, class_geojson, series_volumes
from segstream.pipelines.tasks.tiling import blend_window, predict_tiled, tile_grid


@pytest.mark.parametrize(
    "size, tile, overlap", [((100, 100), (32, 32), 8), ((70, 300), (64, 64), 16), ((20, 20), (64, 64), 4)]
)
def test_tile_grid_covers_the_image_with_full_tiles(size, tile, overlap):
    tiles = tile_grid(size, tile, overlap)
    cover = np.zeros(size, int)
    for t in tiles:
        assert t.y1 - t.y0 == min(tile[0], size[0]) and t.x1 - t.x0 == min(tile[1], size[1])
        cover[t.y0 : t.y1, t.x0 : t.x1] += 1
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


def _shape(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in r] for r in rows], bool)


SHAPES = {
    "L of 3": (["#.", "##"], [3]),
    "plus of 5": ([".#.", "###", ".#."], [5]),
    "ring with a hole": (["###", "#.#", "###"], [8]),
    "ring holding an island": (["#####", "#...#", "#.#.#", "#...#", "#####"], [16, 1]),
    "one pixel wide": (["#######"], [7]),
    "diagonal pixels are separate regions": (["#..", ".#.", "..#"], [1, 1, 1]),
    "U whose arms touch at a corner": (["#.#", "#.#", "###", "...", ".#."], [7, 1]),
    "whole image (touches every border)": (["###", "###"], [6]),
    "staircase around a hole": (["##...", ".##..", "..###", "#.#.#", "#####"], [15]),
}


def _shoelace(ring) -> float:
    """Signed area of a closed ring [[x, y], ..., first point again] (> 0 counter-clockwise, y up)."""
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:])) / 2.0


def _feature_areas(feature) -> tuple[float, float]:
    """(exterior - holes by shoelace, area_px) of a GeoJSON feature; checks the rings' form."""
    exterior, *holes = feature["geometry"]["coordinates"]
    for ring in (exterior, *holes):
        assert ring[0] == ring[-1] and len(ring) >= 5
    assert _shoelace(exterior) > 0 and all(_shoelace(h) < 0 for h in holes)  # RFC 7946 orientation
    return _shoelace(exterior) + sum(_shoelace(h) for h in holes), feature["properties"]["area_px"]


@pytest.mark.parametrize("name", SHAPES)
def test_geojson_polygon_area_equals_the_pixel_count_of_every_region(name):
    rows, counts = SHAPES[name]
    ids = _shape(rows).astype(np.uint8)
    features = class_geojson(ids, ("background", "thing"), skip=(0,))["features"]
    areas = [_feature_areas(f) for f in features]
    assert sorted(px for _, px in areas) == sorted(counts)
    assert all(shoelace == px for shoelace, px in areas)


def test_geojson_areas_add_up_to_class_areas_on_random_maps():
    rng = np.random.default_rng(3)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        ids = rng.integers(0, 3, (h, w)).astype(np.uint8)
        features = class_geojson(ids, ("a", "b", "c"))["features"]
        per_class = np.zeros(3)
        for f in features:
            shoelace, px = _feature_areas(f)
            assert shoelace == px
            per_class[f["properties"]["class_id"]] += px
        assert per_class.tolist() == np.bincount(ids.ravel(), minlength=3).tolist()


def test_geojson_holes_are_interior_rings_in_map_coordinates():
    ids = np.zeros((6, 6), np.uint8)
    ids[1:5, 1:5] = 1
    ids[2:4, 2:4] = 0  # a 2x2 hole
    geo = class_geojson(ids, ("background", "field"), geotransform=(100.0, 2.0, 0.0, 50.0, 0.0, -2.0), skip=(0,))
    (feature,) = geo["features"]
    exterior, hole = feature["geometry"]["coordinates"]
    assert feature["properties"]["area_px"] == 12
    assert _feature_areas(feature)[0] == 12 * 4  # m², 2 m pixels
    assert min(x for x, _ in hole) == 104.0 and max(y for _, y in hole) == 46.0
