"""The satellite pipeline: tiled inference through the real runtime (tile source -> ONNX
Runtime -> stitch), no seams, blending checked with a model that has spatial context, areas in
m², GeoJSON polygons whose areas match, the colourised map, and bad inputs through the CLI."""

from __future__ import annotations

import json
import subprocess

import cv2
import numpy as np
import pytest

from segstream.pipelines.apps.satellite import StitchStage
from segstream.pipelines.tasks.areas import polygon_area
from segstream.pipelines.tasks.inference import model_branch
from segstream.pipelines.tasks.road import SemanticRunner
from segstream.pipelines.tasks.tiling import TileStitcher, predict_tiled
from segstream.stream.backends import open_backend
from segstream.stream.graph import Graph
from segstream.stream.sinks import NullSink
from segstream.stream.sources import open_source
from tests.conftest import ROOT, segstream_cmd
from tests.pipelines.handset_models import PALETTE_BGR, border_model, context_model, threshold_model
from tests.pipelines.scenes import rectangles_map

NAMES = ("background", "field", "roof")


def _stitched(tmp_path, model: str, image_path: str, tile: str, overlap: int) -> np.ndarray:
    """The class map the streaming runtime stitches from tiles (real graph, real ONNX Runtime)."""
    runner = SemanticRunner(open_backend(model), drivable=False, keep_probabilities=True)
    stitch = StitchStage(results_dir=str(tmp_path / f"res_{tile}_{overlap}"))
    steps = [*model_branch("semantic", runner.backend, runner.preprocess, runner.postprocess), stitch]
    source = open_source(f"tiles://{image_path}?tile={tile}&overlap={overlap}&gsd=1")
    report = Graph(source, steps, [NullSink()]).run()
    assert report.error is None, report.error
    assert stitch.stitcher.complete
    return stitch.stitcher.class_ids


def _whole(model: str, image_path: str) -> np.ndarray:
    return SemanticRunner(open_backend(model), drivable=False)(cv2.imread(image_path)).class_ids


def test_tiled_result_equals_the_whole_image_for_a_per_pixel_model(tmp_path):
    rectangles_map(tmp_path / "m.png")
    model = threshold_model(str(tmp_path / "t.onnx"), thresholds=(60, 180), class_names=NAMES)
    whole = _whole(model, str(tmp_path / "m.png"))
    assert set(np.unique(whole)) == {0, 1, 2}
    assert np.array_equal(_stitched(tmp_path, model, str(tmp_path / "m.png"), "96x128", 16), whole)


def test_blending_removes_the_seams_of_a_model_with_spatial_context(tmp_path):
    # Level 180 of 255 (0.71) is above the 0.5 threshold inside a region, but a tile's zero
    # padding drags the 3x3 mean at its edge below it: cut tiles flip their edge pixels.
    img = np.zeros((120, 200, 3), np.uint8)
    img[10:110, 15:185] = 180
    cv2.imwrite(str(tmp_path / "m.png"), img)
    model = context_model(str(tmp_path / "c.onnx"))
    whole = _whole(model, str(tmp_path / "m.png"))
    naive = _stitched(tmp_path, model, str(tmp_path / "m.png"), "48x64", 0)
    blended = _stitched(tmp_path, model, str(tmp_path / "m.png"), "48x64", 12)
    assert np.count_nonzero(naive != whole) > 50  # seams where tiles were cut without overlap
    assert np.array_equal(blended, whole)


def test_stitcher_equals_predict_tiled_and_holds_one_band_of_rows():
    rng = np.random.default_rng(1)
    scores = rng.random((3, 230, 170)).astype(np.float32)
    stitcher = TileStitcher((230, 170), (64, 64), 16, 3)
    bands = []
    for t in stitcher.tiles:
        stitcher.add(t, scores[:, t.y0 : t.y1, t.x0 : t.x1])
        bands.append(stitcher._acc.shape[1])
    want = np.argmax(
        predict_tiled(scores.transpose(1, 2, 0), lambda tile: tile.transpose(2, 0, 1), (64, 64), 16), axis=0
    )
    assert np.array_equal(stitcher.class_ids, want)
    assert max(bands) <= 64 and stitcher.rows_done == 230
    with pytest.raises(ValueError, match="tiles must arrive in grid order"):
        stitcher.add(stitcher.tiles[0], scores[:, :64, :64])


def _run(*args):
    return subprocess.run(segstream_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_areas_in_square_metres_polygons_and_map_through_the_cli(tmp_path):
    counts = rectangles_map(tmp_path / "m.png")
    model = threshold_model(str(tmp_path / "t.onnx"), thresholds=(60, 180), class_names=NAMES)
    out = _run(
        "run",
        "--pipeline",
        "satellite",
        "--source",
        f"tiles://{tmp_path}/m.png?tile=128x128&overlap=24&gsd=0.5",
        "--output",
        str(tmp_path / "out" / "tiles.jsonl"),
        "--quiet",
        "--set",
        f"satellite.artifact='{model}'",
    )
    assert out.returncode == 0, out.stderr
    res = tmp_path / "out"
    summary = json.loads((res / "summary.json").read_text())
    assert summary["areas_m2"] == {"field": counts[1] * 0.25, "roof": counts[2] * 0.25}
    assert summary["complete"] is True and summary["coordinates"] == "pixel"
    records = [json.loads(x) for x in (res / "tiles.jsonl").read_text().splitlines()]
    assert len(records) == summary["tiles"] and records[-1]["results"]["map"]["areas_m2"] == summary["areas_m2"]
    geo = json.loads((res / "classes.geojson").read_text())
    by_class = {}
    for f in geo["features"]:
        ring = f["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1]
        by_class.setdefault(f["properties"]["class_name"], []).append(polygon_area(ring[:-1]) * 0.25)
        assert f["properties"]["area_m2"] == pytest.approx(polygon_area(ring[:-1]) * 0.25)
    assert sorted(by_class) == ["field", "roof"] and len(geo["features"]) == 4
    assert sum(by_class["field"]) == counts[1] * 0.25 and sum(by_class["roof"]) == counts[2] * 0.25
    classes = cv2.imread(str(res / "classes.png"), cv2.IMREAD_UNCHANGED)
    assert [int(np.count_nonzero(classes == c)) for c in range(3)] == [counts[0], counts[1], counts[2]]
    colours = cv2.imread(str(res / "map.png"))
    assert tuple(colours[200, 350]) == PALETTE_BGR[2] and tuple(colours[50, 100]) == PALETTE_BGR[1]
    assert "field 5206.2 m²" in out.stdout


def test_map_coordinates_from_a_geotransform(tmp_path):
    from segstream.pipelines.tasks.areas import class_geojson

    ids = np.zeros((40, 60), np.uint8)
    ids[10:20, 5:25] = 1
    geo = class_geojson(
        ids, ("background", "field"), geotransform=(500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5), skip=(0,)
    )
    ring = np.asarray(geo["features"][0]["geometry"]["coordinates"][0])
    assert ring[:, 0].min() == 500002.5 and ring[:, 0].max() == 500012.5
    assert ring[:, 1].max() == 3999995.0 and ring[:, 1].min() == 3999990.0
    assert polygon_area(ring[:-1]) == 200 * 0.25


@pytest.mark.parametrize(
    "source, extra, code, message",
    [
        ("tiles://{d}/m.png", [], 2, "the ground sampling distance is unknown"),
        ("{d}/m.png", ["--set", "satellite.gsd_m=0.5"], 2, "the satellite pipeline needs a tiled image"),
        ("tiles://{d}/missing.png?gsd=1", [], 1, "missing.png: no such image"),
        ("tiles://{d}/m.png?gsd=1&tile=16x16&overlap=16", [], 2, "overlap 16 must be smaller than the tile"),
        ("tiles://{d}/m.png?gsd=1&tile=8x8", [], 2, "m.png?gsd=1&tile=8x8: tile must be at least 16x16"),
    ],
)
def test_bad_input_gives_one_line_and_its_exit_code(tmp_path, source, extra, code, message):
    cv2.imwrite(str(tmp_path / "m.png"), np.full((40, 50, 3), 30, np.uint8))
    model = threshold_model(str(tmp_path / "t.onnx"), thresholds=(60, 180), class_names=NAMES)
    out = _run(
        "run",
        "--pipeline",
        "satellite",
        "--source",
        source.format(d=tmp_path),
        "--quiet",
        "--output",
        str(tmp_path / "out" / "r.jsonl"),
        "--set",
        f"satellite.artifact='{model}'",
        *extra,
    )
    assert out.returncode == code, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("segstream: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in out.stderr


def test_nowhere_to_write_the_map_is_a_config_error(tmp_path):
    model = threshold_model(str(tmp_path / "t.onnx"), class_names=("background", "field"))
    out = _run(
        "run",
        "--pipeline",
        "satellite",
        "--source",
        "synthetic://?frames=1",
        "--output",
        "null://",
        "--set",
        f"satellite.artifact='{model}'",
    )
    assert out.returncode == 2 and "set satellite.results_dir or give a file or folder --output" in out.stderr


def _satellite(tmp_path, source: str, model: str, *extra, output: str = "out/tiles.jsonl"):
    return _run(
        "run",
        "--pipeline",
        "satellite",
        "--source",
        source,
        "--output",
        str(tmp_path / output),
        "--quiet",
        "--set",
        f"satellite.artifact='{model}'",
        *extra,
    )


def test_a_position_dependent_model_leaves_seams_unless_the_overlap_is_wide_enough(tmp_path):
    # The model's threshold moves within 6 px of its input's border, the way zero padding and a
    # layout prior move a real network's output: tiles must hand over beyond that, in both.
    img = np.full((150, 230, 3), 153, np.uint8)
    cv2.imwrite(str(tmp_path / "m.png"), img)
    model = border_model(str(tmp_path / "b.onnx"), reach=6)
    whole = _whole(model, str(tmp_path / "m.png"))
    narrow = _satellite(tmp_path, f"tiles://{tmp_path}/m.png?tile=64x64&overlap=8&gsd=1", model, output="n/t.jsonl")
    assert narrow.returncode == 0, narrow.stderr
    seams = json.loads((tmp_path / "n" / "summary.json").read_text())["seams"]
    assert seams["seam"] is True and seams["change"] > 0.5 and seams["tile_disagreement"] > 0.3
    assert "a seam" in narrow.stderr and "raise overlap= (try 32, the default)" in narrow.stderr
    classes = cv2.imread(str(tmp_path / "n" / "classes.png"), cv2.IMREAD_UNCHANGED)
    assert np.count_nonzero(classes != whole) > 1000
    default = _satellite(tmp_path, f"tiles://{tmp_path}/m.png?tile=64x64&gsd=1", model, output="d/t.jsonl")
    assert default.returncode == 0, default.stderr
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["overlap"] == 32 and summary["seams"]["seam"] is False and "seam" not in default.stderr
    assert np.array_equal(cv2.imread(str(tmp_path / "d" / "classes.png"), cv2.IMREAD_UNCHANGED), whole)


@pytest.mark.parametrize("overlap", [8, 12])
def test_content_edges_on_the_middle_of_an_overlap_are_not_seams(tmp_path, overlap):
    from segstream.pipelines.tasks.tiling import tile_grid

    img = np.full((120, 200, 3), 20, np.uint8)
    grid = tile_grid((120, 200), (48, 64), overlap)
    ys = sorted({t.y0 for t in grid})
    mid = (ys[1] + ys[0] + 48) // 2
    img[mid:, :] = 200  # a long horizontal edge exactly on a handover line
    cv2.imwrite(str(tmp_path / "m.png"), img)
    model = threshold_model(str(tmp_path / "t.onnx"), thresholds=(128,), class_names=("background", "field"))
    out = _satellite(tmp_path, f"tiles://{tmp_path}/m.png?tile=48x64&overlap={overlap}&gsd=1", model)
    assert out.returncode == 0, out.stderr
    seams = json.loads((tmp_path / "out" / "summary.json").read_text())["seams"]
    assert seams["change"] == 1.0 and seams["tile_disagreement"] == 0.0 and seams["seam"] is False
    assert "seam" not in out.stderr


def test_a_missing_map_is_reported_before_any_output_is_created(tmp_path):
    model = threshold_model(str(tmp_path / "t.onnx"), thresholds=(60, 180), class_names=NAMES)
    out = _satellite(tmp_path, f"tiles://{tmp_path}/missing.png?gsd=1", model)
    assert out.returncode == 1 and "missing.png: no such image" in out.stderr
    assert not (tmp_path / "out").exists()  # an empty tiles.jsonl was left behind


def test_a_partial_map_counts_the_tiles_it_processed(tmp_path):
    rectangles_map(tmp_path / "m.png")
    model = threshold_model(str(tmp_path / "t.onnx"), thresholds=(60, 180), class_names=NAMES)
    out = _satellite(tmp_path, f"tiles://{tmp_path}/m.png?tile=96x128&overlap=16&gsd=0.1", model, "--max-frames", "6")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["complete"] is False and summary["tiles"] == 6 and summary["tile_count"] == 16
    # 0.1 m pixels: 0.010000000000000002 m² each in floats; the JSON carries the figure, not the noise
    assert all(v == float(f"{v:.10g}") for v in summary["areas_m2"].values())


def test_a_fixed_model_input_that_stretches_the_tiles_is_reported(tmp_path):
    rectangles_map(tmp_path / "m.png")
    model = threshold_model(str(tmp_path / "f.onnx"), thresholds=(60, 180), class_names=NAMES, input_size_hw=(36, 64))
    out = _satellite(tmp_path, f"tiles://{tmp_path}/m.png?tile=128x128&overlap=32&gsd=1", model)
    assert out.returncode == 0, out.stderr
    assert "the tiles are 128x128 but the model resizes every input to 36x64, stretching them 1.78x" in out.stderr
    assert "tile=HxW of the model's aspect ratio" in out.stderr


def _shoelace(ring) -> float:
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:])) / 2.0


def test_generated_map_measures_as_its_ground_truth_with_the_printed_command(tmp_path):
    gen = _run("generate", "--kind", "tiles", "--out", str(tmp_path / "map"), "--width", "900", "--height", "700")
    assert gen.returncode == 0, gen.stderr
    truth = json.loads((tmp_path / "map" / "ground_truth.json").read_text())
    command = next(line.strip() for line in gen.stdout.splitlines() if line.strip().startswith("segstream run"))
    assert command == truth["command"]
    run = subprocess.run(
        command.replace("segstream", " ".join(segstream_cmd()), 1),
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    res = tmp_path / "map" / "run"
    summary = json.loads((res / "summary.json").read_text())
    assert summary["areas_m2"] == truth["areas_m2"] and summary["seams"]["seam"] is False
    labels = cv2.imread(str(tmp_path / "map" / "labels.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(cv2.imread(str(res / "classes.png"), cv2.IMREAD_UNCHANGED), labels)
    geo = json.loads((res / "classes.geojson").read_text())
    per_class: dict[str, float] = {}
    for f in geo["features"]:
        exterior, *holes = f["geometry"]["coordinates"]
        assert _shoelace(exterior) + sum(_shoelace(h) for h in holes) == f["properties"]["area_px"]
        per_class[f["properties"]["class_name"]] = (
            per_class.get(f["properties"]["class_name"], 0) + f["properties"]["area_m2"]
        )
    assert {k: float(f"{v:.10g}") for k, v in per_class.items()} == truth["areas_m2"]  # the totals match summary.json
    assert len(geo["features"]) == len(truth["regions"])
    assert sum(len(f["geometry"]["coordinates"]) - 1 for f in geo["features"]) == sum(
        r["holes"] for r in truth["regions"]
    )
