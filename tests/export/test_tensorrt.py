"""ONNX -> TensorRT: the torch- and TensorRT-free parts here, engine builds where TensorRT and a GPU exist."""

from __future__ import annotations

import importlib.util
import json
import os

import cv2
import numpy as np
import pytest

from segstream.export.tensorrt import (
    DEFAULT_DYNAMIC_HW,
    CalibrationFeeder,
    build_engine,
    engine_document,
    onnx_input_shapes,
    precision_name,
    profile_shapes,
    read_cache,
    write_cache,
    write_engine_document,
)
from segstream.stream.backends.tensorrt import engine_metadata_path, read_engine_document, read_engine_metadata
from segstream.stream.errors import BackendError, ConfigError, ModelError, SourceError
from tests.conftest import pattern_frame, read_pattern_index, write_video
from tests.export.tiny_model import TINY_META, export_tiny, image_batch


def _gpu_count() -> int:
    try:
        from segstream.stream.backends.tensorrt import import_cudart

        cudart = import_cudart()
        err, n = cudart.cudaGetDeviceCount()
    except (BackendError, RuntimeError):
        return 0
    return int(n) if err == cudart.cudaError_t.cudaSuccess else 0


HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
HAVE_GPU = _gpu_count() > 0

needs_trt_reason = "needs TensorRT 10 (pip install tensorrt cuda-python, or JetPack) and an NVIDIA GPU"


def trt_test(fn):
    """Marks a test needs_tensorrt + needs_gpu and skips it with a reason where either is absent."""
    fn = pytest.mark.skipif(not (HAVE_TRT and HAVE_GPU), reason=needs_trt_reason)(fn)
    return pytest.mark.needs_gpu(pytest.mark.needs_tensorrt(fn))


def to_chw(size_hw):
    """A preprocess: BGR uint8 -> (1, 3, h, w) float32 of the image resized to ``size_hw``, 0-255 values."""

    def pre(img):
        img = cv2.resize(img, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(img.astype(np.float32).transpose(2, 0, 1)[None])

    return pre


def index_of(chw: np.ndarray) -> int:
    """Reads back the frame index painted by ``pattern_frame`` from one (3, H, W) float image."""
    return read_pattern_index(chw.transpose(1, 2, 0).astype(np.uint8))


# ---------------------------------------------------------------- calibration feeder


def test_feeder_on_a_video_gives_full_batches_and_stops_after_max_frames(tmp_path):
    video = write_video(str(tmp_path / "calib.avi"), 12, size_hw=(120, 160))
    feeder = CalibrationFeeder(source=video, preprocess=to_chw((120, 160)), max_frames=7, batch_size=2)
    batches = list(feeder)
    assert [b.shape for b in batches] == [(2, 3, 120, 160)] * 3  # 7 frames: 3 batches, 1 dropped
    assert all(b.dtype == np.float32 and b.flags.c_contiguous for b in batches)
    assert feeder.frames_used == 7
    assert [index_of(x) for b in batches for x in b] == [0, 1, 2, 3, 4, 5]


def test_feeder_stride_spreads_frames_over_the_video(tmp_path):
    video = write_video(str(tmp_path / "calib.avi"), 12, size_hw=(120, 160))
    feeder = CalibrationFeeder(source=video, preprocess=to_chw((120, 160)), max_frames=10, stride=3)
    assert [index_of(b[0]) for b in feeder] == [0, 3, 6, 9]


def test_feeder_on_an_image_folder_follows_name_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), pattern_frame(i, (96, 128)))
    feeder = CalibrationFeeder(source=str(folder), preprocess=to_chw((96, 128)), max_frames=3)
    batches = list(feeder)
    assert [b.shape for b in batches] == [(1, 3, 96, 128)] * 3
    assert [index_of(b[0]) for b in batches] == [0, 1, 2]
    # resized input: the shape follows preprocess, not the source
    small = list(CalibrationFeeder(source=str(folder), preprocess=to_chw((32, 48)), max_frames=2))
    assert [b.shape for b in small] == [(1, 3, 32, 48)] * 2


def test_feeder_rejects_a_preprocess_of_the_wrong_shape(tmp_path):
    video = write_video(str(tmp_path / "calib.avi"), 3)
    bad = CalibrationFeeder(source=video, preprocess=lambda img: img.astype(np.float32), max_frames=2)
    with pytest.raises(ModelError, match=r"\(1, 3, H, W\) float32"):
        list(bad)


def test_feeder_rejects_frames_of_different_sizes(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), pattern_frame(0, (64, 64)))
    cv2.imwrite(str(folder / "b.png"), pattern_frame(1, (80, 64)))
    feeder = CalibrationFeeder(source=str(folder), preprocess=lambda img: to_chw(img.shape[:2])(img), max_frames=2)
    with pytest.raises(ModelError, match="one size"):
        list(feeder)


def test_feeder_with_too_few_frames_for_a_batch(tmp_path):
    video = write_video(str(tmp_path / "short.avi"), 2)
    with pytest.raises(SourceError, match="fewer than one calibration batch of 4"):
        list(CalibrationFeeder(source=video, preprocess=to_chw((120, 160)), max_frames=8, batch_size=4))


@pytest.mark.parametrize(
    "kwargs", [{"max_frames": 0}, {"batch_size": 0}, {"stride": 0}, {"max_frames": 2, "batch_size": 4}]
)
def test_feeder_argument_checks(kwargs):
    with pytest.raises(ConfigError):
        CalibrationFeeder(source="x.mp4", preprocess=to_chw((8, 8)), **kwargs)


# ---------------------------------------------------------------- profile shapes


@pytest.mark.parametrize(
    "onnx_shape, size_hw, expected",
    [
        ((1, 3, 360, 640), None, ((1, 3, 360, 640),) * 3),  # fixed ONNX wins
        ((1, 3, None, None), (550, 550), ((1, 3, 550, 550),) * 3),  # fixed metadata size
        ((None, 3, 512, 512), None, ((1, 3, 512, 512),) * 3),  # dynamic batch -> 1
        ((1, 3, None, None), None, tuple((1, 3, *hw) for hw in DEFAULT_DYNAMIC_HW)),  # dynamic H/W
        ((None, 3, None, None), None, tuple((1, 3, *hw) for hw in DEFAULT_DYNAMIC_HW)),
    ],
)
def test_profile_shapes_rules(onnx_shape, size_hw, expected):
    assert profile_shapes(onnx_shapes={"image": onnx_shape}, input_size_hw=size_hw) == {"image": expected}


def test_profile_shapes_explicit_entries_and_their_checks():
    shapes = {"image": (1, 3, None, None)}
    given = {"image": [(1, 3, 256, 256), (1, 3, 512, 1024), (1, 3, 1024, 2048)]}
    assert profile_shapes(onnx_shapes=shapes, input_size_hw=None, input_shapes=given)["image"][1] == (1, 3, 512, 1024)
    with pytest.raises(ConfigError, match="axis 1 is fixed at 3"):
        profile_shapes(onnx_shapes=shapes, input_size_hw=None, input_shapes={"image": [(1, 4, 8, 8)] * 3})
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        profile_shapes(
            onnx_shapes=shapes,
            input_size_hw=None,
            input_shapes={"image": [(1, 3, 64, 64), (1, 3, 32, 32), (1, 3, 128, 128)]},
        )
    with pytest.raises(ConfigError, match="ONNX inputs are"):
        profile_shapes(onnx_shapes=shapes, input_size_hw=None, input_shapes={"img": [(1, 3, 8, 8)] * 3})
    with pytest.raises(ConfigError, match="axis 1 is dynamic"):
        profile_shapes(onnx_shapes={"tokens": (1, None)}, input_size_hw=None)


def test_onnx_input_shapes_reads_dynamic_and_fixed_dims(tmp_path):
    dyn = export_tiny(str(tmp_path / "dyn.onnx"), dynamic_hw=True)
    fixed = export_tiny(str(tmp_path / "fixed.onnx"), dynamic_hw=False, size_hw=(24, 40))
    assert onnx_input_shapes(dyn) == {"image": (1, 3, None, None)}
    assert onnx_input_shapes(fixed) == {"image": (1, 3, 24, 40)}


# ---------------------------------------------------------------- caches and the side file


def test_cache_files_round_trip_and_empty_ones_are_ignored(tmp_path):
    path = str(tmp_path / "sub" / "calib.cache")
    assert read_cache(path) is None and read_cache(None) is None
    write_cache(path, b"\x00scales\xff")
    assert read_cache(path) == b"\x00scales\xff"
    assert sorted(os.listdir(tmp_path / "sub")) == ["calib.cache"]  # no temporary file left
    open(path, "wb").close()
    assert read_cache(path) is None


def test_engine_side_file_round_trip(tmp_path):
    engine = str(tmp_path / "tiny.engine")
    profiles = {"image": ((1, 3, 128, 128), (1, 3, 384, 640), (1, 3, 1088, 1920))}
    doc = engine_document(
        metadata=TINY_META,
        precision=precision_name(fp16=True, int8=False),
        tensorrt_version="10.7.0",
        profiles=profiles,
        onnx_path="/x/tiny.onnx",
    )
    side = write_engine_document(engine, doc)
    assert side == engine_metadata_path(engine) == engine + ".json"
    meta = read_engine_metadata(engine)
    assert meta.class_names == TINY_META.class_names and meta.mean == TINY_META.mean
    assert meta.palette_bgr == TINY_META.palette_bgr and meta.extra == TINY_META.extra
    assert meta.versions == {**TINY_META.versions, "tensorrt": "10.7.0"}
    info = read_engine_document(engine)["engine"]
    assert info["precision"] == "fp16" and info["tensorrt_version"] == "10.7.0"
    assert info["profiles"]["image"][2] == [1, 3, 1088, 1920]


def test_engine_without_side_file_has_no_metadata_and_a_bad_one_is_an_error(tmp_path):
    engine = str(tmp_path / "plain.engine")
    assert read_engine_metadata(engine) is None
    with open(engine_metadata_path(engine), "w") as f:
        f.write("{'model': 'not json'}")
    with pytest.raises(ModelError, match="cannot read the engine's metadata"):
        read_engine_metadata(engine)


@pytest.mark.parametrize(
    "fp16, int8, name",
    [(False, False, "fp32"), (True, False, "fp16"), (False, True, "int8"), (True, True, "int8+fp16")],
)
def test_precision_names(fp16, int8, name):
    assert precision_name(fp16=fp16, int8=int8) == name


# ---------------------------------------------------------------- build_engine before TensorRT


def test_int8_without_calibration_or_cache_is_refused_before_tensorrt(tmp_path):
    with pytest.raises(ConfigError, match="INT8 needs calibration"):
        build_engine(onnx_path=str(tmp_path / "m.onnx"), out_path=str(tmp_path / "m.engine"), int8=True)


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_build_engine_without_tensorrt_says_what_to_install(tmp_path, tiny_onnx):
    onnx_path = tiny_onnx
    with pytest.raises(BackendError, match="pip install tensorrt cuda-python"):
        build_engine(onnx_path=onnx_path, out_path=str(tmp_path / "tiny.engine"))
    assert not os.path.exists(tmp_path / "tiny.engine")


# ---------------------------------------------------------------- TensorRT and a GPU


@pytest.fixture(scope="module")
def tiny_dynamic_onnx(tiny_onnx):
    return tiny_onnx


def _ort(onnx_path, x):
    from segstream.stream.backends import OnnxRuntimeBackend

    return OnnxRuntimeBackend(onnx_path).run({"image": x})["logits"]


@trt_test
@pytest.mark.parametrize("fp16, tol", [(False, 1e-3), (True, 2e-2)])
def test_engine_matches_onnxruntime_at_several_sizes(tmp_path, tiny_dynamic_onnx, fp16, tol):
    from segstream.export.onnx import relative_error
    from segstream.stream.backends import open_backend

    engine = str(tmp_path / "tiny.engine")
    timing = str(tmp_path / "timing.cache")
    shapes = {"image": [(1, 3, 16, 16), (1, 3, 64, 96), (1, 3, 128, 160)]}
    build_engine(onnx_path=tiny_dynamic_onnx, out_path=engine, fp16=fp16, input_shapes=shapes, timing_cache=timing)
    assert read_cache(timing) is not None
    backend = open_backend(engine)
    assert backend.device == "cuda:0" and backend.metadata.class_names == TINY_META.class_names
    assert backend.engine_info["precision"] == precision_name(fp16=fp16, int8=False)
    for size in [(64, 96), (16, 16), (128, 160), (40, 56)]:  # grows and shrinks the buffers
        x = image_batch(size, seed=size[0])
        assert relative_error(backend.run({"image": x})["logits"], _ort(tiny_dynamic_onnx, x)) < tol
    with pytest.raises(ModelError, match="outside the engine's optimisation profile"):
        backend.run({"image": image_batch((256, 256))})
    backend.close()
    backend.close()


@trt_test
def test_int8_engine_calibrates_from_a_video_and_reuses_the_cache(tmp_path, tiny_dynamic_onnx):
    from segstream.stream.backends import open_backend

    video = write_video(str(tmp_path / "calib.avi"), 16, size_hw=(120, 160))
    cache = str(tmp_path / "calib.cache")
    shapes = {"image": [(1, 3, 32, 32), (1, 3, 64, 96), (1, 3, 128, 160)]}
    feeder = CalibrationFeeder(source=video, preprocess=lambda img: to_chw((64, 96))(img) / 255.0, max_frames=8)
    engine = str(tmp_path / "int8.engine")
    build_engine(
        onnx_path=tiny_dynamic_onnx,
        out_path=engine,
        int8=True,
        calibration=feeder,
        calibration_cache=cache,
        input_shapes=shapes,
    )
    assert feeder.frames_used == 8 and read_cache(cache) is not None
    again = str(tmp_path / "int8_cached.engine")
    build_engine(onnx_path=tiny_dynamic_onnx, out_path=again, int8=True, calibration_cache=cache, input_shapes=shapes)
    assert json.load(open(again + ".json"))["engine"]["precision"] == "int8"
    out = open_backend(again).run({"image": image_batch((64, 96))})["logits"]
    assert out.shape == (1, 3, 64, 96) and np.isfinite(out).all()
