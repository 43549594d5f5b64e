"""Backends with real runtimes: ONNX Runtime on CPU here, CUDA and TensorRT where present.

The tiny conv net is exported with ``export_onnx`` (torch, build side); the backends under
test never import torch.
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest

from segstream.stream.backends import OnnxRuntimeBackend, open_backend
from segstream.stream.backends.onnxruntime import provider_entry
from segstream.stream.errors import BackendError, ModelError

pytest.importorskip("torch")
pytest.importorskip("onnx")

from segstream.export.onnx import read_metadata, relative_error  # noqa: E402
from tests.export.tiny_model import TINY_META, image_batch  # noqa: E402


def _cuda_ep_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def test_metadata_round_trip_through_export_and_backend(tiny_onnx):
    backend = OnnxRuntimeBackend(tiny_onnx)
    assert backend.metadata == TINY_META
    assert read_metadata(tiny_onnx) == TINY_META
    assert [t.name for t in backend.inputs] == ["image"]
    assert [t.name for t in backend.outputs] == ["logits"]
    assert backend.device == "cpu"


def test_dynamic_export_runs_at_other_sizes(tiny_onnx):
    backend = open_backend(tiny_onnx, intra_op_threads=1)
    for size in [(32, 48), (40, 72), (17, 23)]:
        out = backend.run({"image": image_batch(size)})["logits"]
        assert out.shape == (1, 3, *size) and out.dtype == np.float32


def test_io_binding_path_gives_the_same_outputs(tiny_onnx):
    x = image_batch((24, 40))
    plain = OnnxRuntimeBackend(tiny_onnx, io_binding=False).run({"image": x})["logits"]
    bound_backend = OnnxRuntimeBackend(tiny_onnx, io_binding=True)
    assert bound_backend.io_binding
    bound = bound_backend.run({"image": x})["logits"]
    np.testing.assert_array_equal(plain, bound)


@pytest.mark.skipif(_cuda_ep_available(), reason="CUDAExecutionProvider is available here: no fallback to observe")
def test_missing_cuda_provider_without_fallback_names_the_package(tiny_onnx):
    with pytest.raises(BackendError, match="CUDAExecutionProvider.*onnxruntime-gpu"):
        OnnxRuntimeBackend(tiny_onnx, providers=["cuda"], allow_fallback=False)


@pytest.mark.skipif(_cuda_ep_available(), reason="CUDAExecutionProvider is available here: no fallback to observe")
def test_missing_cuda_provider_with_fallback_runs_on_cpu_and_says_so(tiny_onnx, caplog):
    with caplog.at_level(logging.WARNING, logger="segstream.stream.backends.onnxruntime"):
        backend = OnnxRuntimeBackend(tiny_onnx, providers=["cuda", "cpu"], allow_fallback=True)
    assert backend.providers[0] == "CPUExecutionProvider"
    assert backend.device == "cpu"
    assert not backend.io_binding
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "CUDAExecutionProvider" in text and "onnxruntime-gpu" in text
    assert "runs on CPUExecutionProvider" in text
    assert backend.run({"image": image_batch((16, 16))})["logits"].shape == (1, 3, 16, 16)


def test_tensorrt_provider_options_are_passed_through():
    name, opts = provider_entry(
        "TensorrtExecutionProvider", device_id=1, trt_fp16=True, trt_engine_cache_path="/tmp/trt"
    )
    assert name == "TensorrtExecutionProvider"
    assert opts == {
        "device_id": 1,
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": "/tmp/trt",
    }
    assert provider_entry("CUDAExecutionProvider", device_id=2) == ("CUDAExecutionProvider", {"device_id": 2})
    assert provider_entry("CPUExecutionProvider") == "CPUExecutionProvider"


@pytest.mark.parametrize(
    "inputs, outputs",
    [
        (["input"], ["logits"]),  # wrong input name
        (["image", "mask"], ["logits"]),  # an input the artifact lacks
        (["image"], ["logits", "boxes"]),  # an output the artifact lacks
    ],
)
def test_require_io_rejects_an_artifact_with_other_tensors(tiny_onnx, inputs, outputs):
    backend = OnnxRuntimeBackend(tiny_onnx)
    backend.require_io(["image"], ["logits"])
    with pytest.raises(ModelError, match=r"expected inputs .* found inputs \['image'\] and outputs \['logits'\]"):
        backend.require_io(inputs, outputs)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_engine_without_tensorrt_says_what_to_install(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(BackendError, match="pip install tensorrt cuda-python") as info:
        open_backend(str(engine))
    assert "python3-libnvinfer" in str(info.value)


def test_missing_engine_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no such engine file"):
        open_backend(str(tmp_path / "absent.engine"))


def test_tensorrt_module_imports_without_tensorrt():
    import segstream.stream.backends.tensorrt as trt_backend

    assert trt_backend.engine_metadata_path("a/b.engine") == "a/b.engine.json"


@pytest.mark.needs_gpu
@pytest.mark.skipif(not _cuda_ep_available(), reason="needs onnxruntime-gpu with CUDAExecutionProvider and a CUDA GPU")
@pytest.mark.parametrize("outputs_on", ["device", "cpu"])
def test_cuda_provider_with_io_binding_matches_cpu(tiny_onnx, outputs_on):
    x = image_batch((40, 56))
    ref = OnnxRuntimeBackend(tiny_onnx).run({"image": x})["logits"]
    gpu = OnnxRuntimeBackend(tiny_onnx, providers=["cuda"], allow_fallback=False, outputs_on=outputs_on)
    assert gpu.device == "cuda:0" and gpu.io_binding
    assert relative_error(gpu.run({"image": x})["logits"], ref) < 1e-4


@pytest.mark.skipif(importlib.util.find_spec("cuda") is None, reason="cuda-python is not installed")
def test_cuda_errors_become_backend_errors_naming_the_call():
    from segstream.stream.backends.tensorrt import cuda_call, import_cudart

    cudart = import_cudart()
    # No driver here (cudaErrorInsufficientDriver) or no such device on a GPU machine: both must raise.
    with pytest.raises(BackendError, match=r"CUDA cudaSetDevice\(9999\) failed with cudaError"):
        cuda_call(cudart, cudart.cudaSetDevice(9999), "cudaSetDevice(9999)")
