"""The medical pipeline end to end through the real CLI: a generated slice stack with discs of
known size, a hand-set threshold ONNX model, areas per slice in mm², the volume in mm³ and ml,
overlays, and the bad inputs (one-line errors, exit codes, nothing lost)."""

from __future__ import annotations

import json
import math
import subprocess

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT, count_video_frames, segstream_cmd
from tests.pipelines.handset_models import threshold_model
from tests.pipelines.scenes import DISC_RADII, disc_slices, write_dicom_series


def _run(*args):
    return subprocess.run(segstream_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=120)


def _medical(tmp_path, source, *extra, outputs=("r.jsonl",)):
    model = threshold_model(str(tmp_path / "disc.onnx"), thresholds=(128,), class_names=("background", "lesion"))
    outs = [a for o in outputs for a in ("--output", str(tmp_path / "out" / o))]
    return _run(
        "run",
        "--pipeline",
        "medical",
        "--source",
        source,
        *outs,
        "--quiet",
        "--set",
        f"medical.artifact='{model}'",
        *extra,
    )


def _records(tmp_path):
    return [json.loads(x) for x in (tmp_path / "out" / "r.jsonl").read_text().splitlines()]


def test_areas_per_slice_and_series_volume_are_exact(tmp_path):
    counts = disc_slices(tmp_path / "s", size_hw=(96, 96))
    out = _medical(
        tmp_path,
        f"stack://{tmp_path}/s?spacing=0.7x0.5&thickness=2.5&window=2000,4000",
        outputs=("r.jsonl", "overlay.avi"),
    )
    assert out.returncode == 0, out.stderr
    records = _records(tmp_path)
    assert [r["results"]["slice"]["index"] for r in records] == list(range(len(DISC_RADII)))
    px = 0.7 * 0.5
    for r, n, radius in zip(records, counts, DISC_RADII):
        area = r["results"]["slice"]["areas_mm2"].get("lesion", 0.0)
        assert area == pytest.approx(n * px, rel=1e-9)
        if radius > 5:  # a drawn disc is pi r^2 within its pixel outline
            assert area == pytest.approx(math.pi * radius**2 * px, rel=0.12)
        assert "background" not in r["results"]["slice"]["areas_mm2"]
    series = records[-1]["results"]["series"]
    volume = sum(counts) * px * 2.5
    assert series["volumes_mm3"]["lesion"] == pytest.approx(volume, rel=1e-9)
    assert series["volumes_ml"]["lesion"] == pytest.approx(volume / 1000, rel=1e-9)
    assert series["complete"] is True and series["slices"] == len(DISC_RADII)
    summary = json.loads((tmp_path / "out" / "series_summary.json").read_text())
    assert summary["volumes_mm3"] == series["volumes_mm3"]
    assert f"lesion {volume / 1000:.3f} ml" in out.stdout
    assert count_video_frames(str(tmp_path / "out" / "overlay.avi")) == len(DISC_RADII)


def test_overlay_blends_class_colours_and_outlines_the_lesion(tmp_path):
    disc_slices(tmp_path / "s", radii=(20,), size_hw=(64, 64), dtype=np.uint8, background=10, disc=200)
    out = _medical(tmp_path, f"stack://{tmp_path}/s?spacing=1&thickness=1", outputs=("frames/",))
    assert out.returncode == 0, out.stderr
    img = cv2.imread(str(tmp_path / "out" / "frames" / "000000.jpg"))
    centre, corner = img[32, 32].astype(int), img[2, 2].astype(int)
    assert centre[1] > centre[0] + 40 and centre[1] > centre[2] + 40  # tinted green (the lesion's colour)
    assert abs(corner - 10).max() < 12  # background untouched


def test_dicom_series_spacing_and_order_from_the_headers(tmp_path):
    pytest.importorskip("pydicom", reason="DICOM series need pydicom (pip install pydicom)")
    counts = write_dicom_series(tmp_path / "ct", spacing=(0.8, 0.6), gap=2.5)
    out = _medical(tmp_path, f"stack://{tmp_path}/ct")
    assert out.returncode == 0, out.stderr
    records = _records(tmp_path)
    assert [r["results"]["slice"]["areas_mm2"].get("lesion", 0) for r in records] == pytest.approx(
        [n * 0.8 * 0.6 for n in counts]
    )
    series = records[-1]["results"]["series"]
    assert series["slice_distance_mm"] == 2.5  # from the positions, not SliceThickness (2.0)
    assert series["volumes_mm3"]["lesion"] == pytest.approx(sum(counts) * 0.48 * 2.5)


def test_spacing_from_the_config_when_the_source_has_none(tmp_path):
    counts = disc_slices(tmp_path / "s", radii=(4, 8))
    cfg = tmp_path / "medical.toml"
    cfg.write_text("[pipeline]\nname = 'medical'\n[medical]\nspacing_mm = [2.0, 2.0]\nthickness_mm = 5.0\n")
    out = _medical(tmp_path, f"stack://{tmp_path}/s?window=2000,4000", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert _records(tmp_path)[-1]["results"]["series"]["volumes_mm3"]["lesion"] == pytest.approx(sum(counts) * 4 * 5)


def _unreadable_third(d):
    disc_slices(d, radii=(3, 4, 5, 6))
    (d / "slice_3.png").write_bytes(b"not a png")


@pytest.mark.parametrize(
    "make, query, code, message",
    [
        (lambda d: d.mkdir(), "?spacing=1&thickness=1&window=2000,4000", 1, "the folder has no slices"),
        (
            lambda d: disc_slices(d, radii=(3, 4)) and cv2.imwrite(str(d / "slice_9.png"), np.zeros((8, 8), np.uint16)),
            "?spacing=1&thickness=1&window=2000,4000",
            1,
            "slice is 8x8 but the series' slices are 64x80",
        ),
        (lambda d: disc_slices(d, radii=(3,)), "?thickness=1&window=2000,4000", 2, "the pixel spacing is unknown"),
        (lambda d: disc_slices(d, radii=(3,)), "?spacing=1&window=2000,4000", 2, "the slice thickness is unknown"),
        (lambda d: disc_slices(d, radii=(3,)), "?spacing=1&thickness=0", 2, "slice thickness must be > 0"),
        (lambda d: disc_slices(d, radii=(3,)), "?spacing=1x&thickness=1", 2, "spacing must look like"),
    ],
)
def test_bad_input_gives_one_line_and_its_exit_code(tmp_path, make, query, code, message):
    make(tmp_path / "s")
    out = _medical(tmp_path, f"stack://{tmp_path}/s{query}")
    assert out.returncode == code, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("segstream: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in out.stderr


def test_an_unreadable_slice_keeps_the_slices_before_and_a_partial_summary(tmp_path):
    _unreadable_third(tmp_path / "s")
    out = _medical(tmp_path, f"stack://{tmp_path}/s?spacing=1&thickness=1&window=2000,4000")
    assert out.returncode == 1
    assert "slice_3.png: not an image OpenCV can read" in out.stderr
    assert [r["results"]["slice"]["index"] for r in _records(tmp_path)] == [0, 1]
    summary = json.loads((tmp_path / "out" / "series_summary.json").read_text())
    assert summary["complete"] is False and summary["slices"] == 2 and summary["slice_count"] == 4


def test_a_plain_folder_is_refused_with_the_uri_to_use(tmp_path):
    disc_slices(tmp_path / "s", radii=(3,))
    out = _medical(tmp_path, str(tmp_path / "s"))
    assert out.returncode == 2
    assert "the medical pipeline needs a slice stack; use --source stack:///path/to/series" in out.stderr


def test_a_window_on_8_bit_slices_is_refused_before_any_slice_is_processed(tmp_path):
    # README's CT window on display-range PNGs: it changed the volume twelvefold without a word.
    disc_slices(tmp_path / "s", radii=(6, 9), dtype=np.uint8, background=30, disc=200)
    out = _medical(
        tmp_path, f"stack://{tmp_path}/s?spacing=1&thickness=1&window=40,400", outputs=("r.jsonl", "overlay.avi")
    )
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("segstream: error:")]
    assert len(errors) == 1 and "window=40,400 given for 8-bit slices" in errors[0] and "drop window=" in errors[0]
    assert "stage '" not in out.stderr and not (tmp_path / "out").exists()  # refused before anything ran


@pytest.mark.parametrize(
    "query, names",
    [
        ("?thickness=1&window=2000,4000", ("?spacing=ROWxCOL", "medical.spacing_mm")),
        ("?spacing=1&window=2000,4000", ("?thickness=MM", "medical.thickness_mm")),
    ],
)
def test_unknown_spacing_is_refused_when_the_pipeline_is_built(tmp_path, query, names):
    disc_slices(tmp_path / "s", radii=(3, 4))
    out = _medical(tmp_path, f"stack://{tmp_path}/s{query}")
    assert out.returncode == 2, out.stderr
    assert all(n in out.stderr for n in names)
    assert "stage 'areas' failed" not in out.stderr and "frames were written" not in out.stderr
    assert not (tmp_path / "out").exists()


def test_a_fixed_model_input_that_stretches_the_slices_is_reported(tmp_path):
    disc_slices(tmp_path / "s", radii=(20,), size_hw=(64, 64))
    model = threshold_model(
        str(tmp_path / "fixed.onnx"), thresholds=(128,), class_names=("background", "lesion"), input_size_hw=(32, 64)
    )
    out = _run(
        "run",
        "--pipeline",
        "medical",
        "--source",
        f"stack://{tmp_path}/s?spacing=1&thickness=1&window=2000,4000",
        "--output",
        str(tmp_path / "out" / "r.jsonl"),
        "--quiet",
        "--set",
        f"medical.artifact='{model}'",
    )
    assert out.returncode == 0, out.stderr
    assert "the slices are 64x64 but the model resizes every input to 32x64, stretching them 2.00x" in out.stderr


def test_figures_in_the_json_carry_no_binary_noise(tmp_path):
    counts = disc_slices(tmp_path / "s", radii=(3, 5, 7))
    out = _medical(tmp_path, f"stack://{tmp_path}/s?spacing=0.7x0.7&thickness=0.3&window=2000,4000")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "out" / "series_summary.json").read_text())
    areas = [s["areas_mm2"]["lesion"] for s in summary["slice_areas_mm2"]]
    assert areas == [float(f"{n * 0.49:.10g}") for n in counts]  # 29 x 0.49 is 14.209999999999999 in floats
    total = summary["volumes_mm3"]["lesion"]
    assert total == float(f"{sum(counts) * 0.49 * 0.3:.10g}") and summary["volumes_ml"]["lesion"] == float(
        f"{total / 1000:.10g}"
    )


def test_generated_slices_measure_as_their_ground_truth_with_the_printed_command(tmp_path):
    gen = _run(
        "generate",
        "--kind",
        "slices",
        "--out",
        str(tmp_path / "ph"),
        "--count",
        "12",
        "--width",
        "96",
        "--height",
        "80",
    )
    assert gen.returncode == 0, gen.stderr
    truth = json.loads((tmp_path / "ph" / "ground_truth.json").read_text())
    command = next(line.strip() for line in gen.stdout.splitlines() if line.strip().startswith("segstream run"))
    assert command == truth["command"]
    run = subprocess.run(
        command.replace("segstream", " ".join(segstream_cmd()), 1),
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "ph" / "run" / "series_summary.json").read_text())
    assert summary["volumes_mm3"] == truth["volumes_mm3"] and summary["volumes_ml"] == truth["volumes_ml"]
    assert [s["areas_mm2"] for s in summary["slice_areas_mm2"]] == [s["areas_mm2"] for s in truth["slices"]]
    # Hand check: the lesion's drawn pixels x 0.7 x 0.7 mm x 2.5 mm, near the sphere's own volume.
    assert truth["volumes_mm3"]["lesion"] == pytest.approx(
        sum(s["pixels"].get("lesion", 0) for s in truth["slices"]) * 0.49 * 2.5
    )
    assert truth["volumes_ml"]["lesion"] == pytest.approx(truth["lesion_sphere"]["volume_ml"], rel=0.2)
    assert "organ" in summary["volumes_ml"] and summary["complete"] is True
