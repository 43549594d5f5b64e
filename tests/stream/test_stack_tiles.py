"""The slice-stack and tile sources: order, 16-bit windowing, DICOM, spacing in the frame's
metadata through the real graph and JSON Lines sink, and their one-line errors."""

import json
import sys
import threading

import cv2
import numpy as np
import pytest

from segstream.stream.errors import ConfigError, SourceError
from segstream.stream.graph import Graph
from segstream.stream.sinks import open_sink
from segstream.stream.sources import open_source
from segstream.stream.sources.stack import SliceStackSource, Window, natural_key, parse_spacing
from tests.pipelines.scenes import disc_slices, write_dicom_series


def _read_all(src):
    src.open()
    items = []
    while (item := src.read(threading.Event())) is not None:
        items.append(item)
    src.close()
    return items


def test_natural_order_16_bit_window_and_uri_spacing(tmp_path):
    counts = disc_slices(tmp_path / "s", radii=tuple(range(1, 12)))  # slice_1 .. slice_11
    src = open_source(f"stack://{tmp_path}/s?spacing=0.7x0.5&thickness=2.5&window=2000,4000")
    items = _read_all(src)
    assert [it.metadata["file"] for it in items] == [f"slice_{i}.png" for i in range(1, 12)]
    assert [int(np.count_nonzero(it.image_bgr[..., 0] == 191)) for it in items] == counts
    first = items[0]
    assert first.image_bgr.dtype == np.uint8 and first.image_bgr.shape == (64, 80, 3)
    # 16-bit values kept until the window: 1000 -> 63.75 -> 64, 3000 -> 191.25 -> 191
    assert set(np.unique(first.image_bgr)) == {64, 191}
    assert first.metadata["spacing_mm"] == [0.7, 0.5] and first.metadata["slice_thickness_mm"] == 2.5
    assert first.metadata["slice_index"] == 0 and first.metadata["slice_count"] == 11


def test_16_bit_without_window_uses_the_series_range(tmp_path):
    disc_slices(tmp_path / "s", radii=(3, 5))
    items = _read_all(SliceStackSource(str(tmp_path / "s")))
    assert set(np.unique(items[0].image_bgr)) == {0, 255}
    assert items[0].metadata["window"] == [2000.0, 2000.0]


@pytest.mark.parametrize("text, want", [("0.7x0.5", (0.7, 0.5)), ("1.25", (1.25, 1.25))])
def test_parse_spacing(text, want):
    assert parse_spacing(text) == want


@pytest.mark.parametrize("text", ["0x1", "a", "1x2x3", "-1"])
def test_parse_spacing_refuses(text):
    with pytest.raises(ConfigError, match="spacing must look like"):
        parse_spacing(text)


def test_window_and_natural_key():
    assert Window(40, 400).apply(np.array([-160, 40, 240, 1000])).tolist() == [0, 128, 255, 255]
    assert sorted(["s10", "s9", "s1"], key=natural_key) == ["s1", "s9", "s10"]
    with pytest.raises(ConfigError, match="CENTER,WIDTH"):
        Window.parse("40")


def _mixed_sizes(d):
    disc_slices(d, radii=(3, 4))
    cv2.imwrite(str(d / "slice_3.png"), np.zeros((32, 32), np.uint16))


def _unreadable(d):
    disc_slices(d, radii=(3, 4))  # 16-bit: a window for 8-bit slices is refused (test below)
    (d / "slice_3.png").write_bytes(b"not a png")


@pytest.mark.parametrize(
    "make, message, after",
    [
        (lambda d: d.mkdir(), "the folder has no slices", None),
        (_mixed_sizes, "slice_3.png: slice is 32x32 but the series' slices are 64x80", None),
        (_unreadable, "slice_3.png: not an image OpenCV can read", 2),
    ],
)
def test_bad_stacks(tmp_path, make, message, after):
    d = tmp_path / "s"
    make(d)
    src = open_source(f"stack://{d}?window=2000,4000")
    got = 0
    with pytest.raises(SourceError, match=message):
        src.open()
        while src.read(threading.Event()) is not None:
            got += 1
    if after is not None:
        assert got == after  # the slices before the bad one were delivered


def test_dicom_folder_without_pydicom_says_what_to_install(tmp_path, monkeypatch):
    d = tmp_path / "dcm"
    d.mkdir()
    (d / "a.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # as if not installed
    with pytest.raises(SourceError, match="needs pydicom: pip install pydicom"):
        SliceStackSource(str(d)).open()


def test_dicom_series_sorted_by_position_rescaled_and_windowed(tmp_path):
    pytest.importorskip("pydicom", reason="DICOM series need pydicom (pip install pydicom)")
    counts = write_dicom_series(tmp_path / "ct")
    items = _read_all(open_source(f"stack://{tmp_path}/ct"))
    meta = [it.metadata for it in items]
    assert [m["position_mm"] for m in meta] == [-50.0 + i * 2.5 for i in range(len(counts))]
    assert meta[0]["spacing_mm"] == [0.8, 0.6]
    assert meta[0]["slice_thickness_mm"] == 2.0 and meta[0]["slice_spacing_mm"] == 2.5
    assert meta[0]["window"] == [150.0, 300.0]
    # HU 0 -> 0 and HU 300 -> 255 through intercept -1024 and the header's window
    assert [int(np.count_nonzero(it.image_bgr[..., 0] == 255)) for it in items] == counts
    assert all(set(np.unique(it.image_bgr)) <= {0, 255} for it in items)


def test_uri_spacing_overrides_the_dicom_header(tmp_path):
    pytest.importorskip("pydicom", reason="DICOM series need pydicom (pip install pydicom)")
    write_dicom_series(tmp_path / "ct")
    items = _read_all(open_source(f"stack://{tmp_path}/ct?spacing=1x1&thickness=3"))
    assert items[0].metadata["spacing_mm"] == [1.0, 1.0] and items[0].metadata["slice_thickness_mm"] == 3.0


def test_tiles_cover_the_map_in_row_major_order_with_their_windows(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (100, 150, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "m.png"), img)
    items = _read_all(open_source(f"tiles://{tmp_path}/m.png?tile=48x64&overlap=8&gsd=0.3"))
    windows = [it.metadata["tile"] for it in items]
    assert [w["index"] for w in windows] == list(range(len(items)))
    assert [(w["y0"], w["x0"]) for w in windows] == sorted((w["y0"], w["x0"]) for w in windows)
    cover = np.zeros((100, 150), int)
    for it, w in zip(items, windows):
        assert np.array_equal(it.image_bgr, img[w["y0"] : w["y1"], w["x0"] : w["x1"]])
        cover[w["y0"] : w["y1"], w["x0"] : w["x1"]] += 1
    assert cover.min() >= 1
    m = items[0].metadata
    assert m["map_size_hw"] == [100, 150] and m["gsd_m"] == 0.3 and m["tile_count"] == len(items)
    assert m["geotransform"] is None


@pytest.mark.parametrize(
    "uri, error, message",
    [
        ("tiles://{d}/none.png", SourceError, "no such image"),
        ("tiles://{d}/bad.png", SourceError, "not an image OpenCV can read"),
        ("tiles://{d}/m.png?tile=32x32&overlap=32", ConfigError, "overlap 32 must be smaller than the tile"),
        ("tiles://{d}/m.png?gsd=-1", ConfigError, "gsd must be > 0"),
        ("tiles://{d}/m.png?zoom=2", ConfigError, "unknown option 'zoom'"),
    ],
)
def test_bad_tile_sources(tmp_path, uri, error, message):
    cv2.imwrite(str(tmp_path / "m.png"), np.zeros((64, 64, 3), np.uint8))
    (tmp_path / "bad.png").write_bytes(b"junk")
    with pytest.raises(error, match=message):
        open_source(uri.format(d=tmp_path)).open()


def test_geotiff_georeference_through_rasterio(tmp_path):
    rasterio = pytest.importorskip("rasterio", reason="GeoTIFF georeferencing needs rasterio (pip install rasterio)")
    from rasterio.transform import from_origin

    path = str(tmp_path / "g.tif")
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=48,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(500000.0, 4000000.0, 0.5, 0.5),
    ) as ds:
        ds.write(np.zeros((3, 48, 64), np.uint8))
    item = _read_all(open_source(f"tiles://{path}?tile=32x32&overlap=4"))[0]
    assert item.metadata["geotransform"] == [500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5]
    assert item.metadata["gsd_m"] == 0.5 and "32633" in item.metadata["crs"]


def test_slice_metadata_travels_with_each_frame_to_the_jsonl_sink(tmp_path):
    disc_slices(tmp_path / "s", radii=(2, 3, 4))
    out = tmp_path / "r.jsonl"
    report = Graph(open_source(f"stack://{tmp_path}/s?spacing=0.5&thickness=1"), [], [open_sink(str(out))]).run()
    assert report.error is None
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["metadata"]["slice_index"] for r in records] == [0, 1, 2]
    assert records[2]["metadata"]["spacing_mm"] == [0.5, 0.5]


def test_a_window_for_8_bit_slices_is_refused_by_scan_before_any_read(tmp_path):
    disc_slices(tmp_path / "s", radii=(3, 4), dtype=np.uint8, background=10, disc=200)
    src = open_source(f"stack://{tmp_path}/s?spacing=1&thickness=1&window=40,400")
    with pytest.raises(ConfigError, match=r"window=40,400 given for 8-bit slices \(slice_1.png\).*drop window="):
        src.scan()
    info = open_source(f"stack://{tmp_path}/s?spacing=1&thickness=1").scan()  # without one: as they are
    assert info.dtype == "uint8" and info.window is None and info.size_hw == (64, 80) and info.slice_count == 2


def test_scan_knows_the_series_before_the_slices_are_read(tmp_path):
    disc_slices(tmp_path / "s", radii=(3, 4, 5))
    src = open_source(f"stack://{tmp_path}/s?spacing=0.5x0.6&window=2000,4000")
    info = src.scan()
    assert (info.slice_count, info.dtype, info.spacing_mm, info.thickness_mm) == (3, "uint16", (0.5, 0.6), None)
    assert src.stats()["slices_read"] == 0


def test_tiles_default_overlap_is_half_the_tile_and_scan_reads_no_pixels(tmp_path):
    cv2.imwrite(str(tmp_path / "m.png"), np.zeros((300, 400, 3), np.uint8))
    src = open_source(f"tiles://{tmp_path}/m.png?tile=128x96&gsd=0.5")
    src.scan()
    assert src.gsd_m == 0.5 and src._image is None
    items = _read_all(src)
    assert items[0].metadata["overlap"] == 48
    with pytest.raises(SourceError, match="no such image"):
        open_source(f"tiles://{tmp_path}/none.png").scan()


def test_a_geotiff_without_rasterio_is_noted_once_however_often_it_is_opened(tmp_path, caplog, monkeypatch):
    import logging

    from segstream.stream.sources import tiles

    monkeypatch.setitem(sys.modules, "rasterio", None)  # as if not installed: import raises ImportError
    path = str(tmp_path / "map.tif")
    cv2.imwrite(path, np.zeros((40, 60, 3), np.uint8))
    with caplog.at_level(logging.WARNING, logger=tiles.__name__):
        for _ in range(3):
            assert tiles.read_georeference(path) == (None, None, False)
    assert sum("rasterio is not installed" in r.getMessage() for r in caplog.records) == 1
