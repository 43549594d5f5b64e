"""TorchBackend: the same Backend interface around an nn.Module, checked against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from segstream.export.onnx import relative_error  # noqa: E402
from segstream.models.torch_backend import TorchBackend  # noqa: E402
from segstream.stream.backends import OnnxRuntimeBackend  # noqa: E402
from segstream.stream.errors import BackendError, ModelError  # noqa: E402
from tests.export.tiny_model import TINY_META, image_batch, tiny_net  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU and a CUDA build of torch")


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("size_hw", [(32, 48), (45, 70)])  # the export size and another one
def test_torch_backend_matches_onnxruntime(tiny_onnx, channels_last, size_hw):
    ort = OnnxRuntimeBackend(tiny_onnx, intra_op_threads=1)
    ref = TorchBackend(
        tiny_net(), input_names=["image"], output_names=["logits"], channels_last=channels_last, metadata=TINY_META
    )
    assert ref.device == "cpu" and ref.metadata == ort.metadata
    x = image_batch(size_hw)
    a = ref.run({"image": x})
    b = ort.run({"image": x})
    assert list(a) == ["logits"] and a["logits"].dtype == np.float32 and a["logits"].shape == (1, 3, *size_hw)
    assert relative_error(b["logits"], a["logits"]) < 1e-4


def test_perturbed_weights_break_the_parity(tiny_onnx):
    """The parity check above can fail: one changed weight is seen."""
    net = tiny_net()
    with torch.no_grad():
        net[2].bias += 0.5
    x = image_batch((32, 48))
    a = TorchBackend(net, input_names=["image"], output_names=["logits"]).run({"image": x})["logits"]
    b = OnnxRuntimeBackend(tiny_onnx).run({"image": x})["logits"]
    assert relative_error(b, a) > 1e-2


def test_outputs_by_dict_and_tuple_follow_output_names():
    class Two(torch.nn.Module):
        def forward(self, x):
            return {"mean": x.mean(dim=1, keepdim=True), "max": x.amax(dim=1, keepdim=True)}

    x = image_batch((8, 8))
    out = TorchBackend(Two(), input_names=["image"], output_names=["max", "mean"]).run({"image": x})
    np.testing.assert_allclose(out["max"], x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(out["mean"], x.mean(axis=1, keepdims=True), rtol=1e-6)
    with pytest.raises(ModelError, match="missing \\['std'\\]"):
        TorchBackend(Two(), input_names=["image"], output_names=["std"]).run({"image": x})


def test_wrong_feeds_are_a_model_error():
    backend = TorchBackend(tiny_net(), input_names=["image"], output_names=["logits"])
    with pytest.raises(ModelError, match="expected inputs \\['image'\\]"):
        backend.run({"input": image_batch((8, 8))})
    backend.close()
    with pytest.raises(BackendError, match="run after close"):
        backend.run({"image": image_batch((8, 8))})


def test_fp16_on_cpu_is_refused():
    with pytest.raises(BackendError, match="fp16.*needs device='cuda'"):
        TorchBackend(tiny_net(), input_names=["image"], output_names=["logits"], precision="fp16")


@pytest.mark.parametrize("kwargs, message", [({"precision": "int8"}, "precision"), ({"device": "tpu"}, "device")])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(BackendError, match=message):
        TorchBackend(tiny_net(), input_names=["image"], output_names=["logits"], **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(BackendError, match="no CUDA GPU"):
        TorchBackend(tiny_net(), input_names=["image"], output_names=["logits"], device="cuda")


@pytest.mark.needs_gpu
@needs_cuda
@pytest.mark.parametrize("precision, tol", [("fp32", 1e-3), ("fp16", 2e-2)])
def test_cuda_matches_onnxruntime(tiny_onnx, precision, tol):
    backend = TorchBackend(
        tiny_net(), input_names=["image"], output_names=["logits"], device="cuda", precision=precision
    )
    assert backend.device.startswith("cuda:")
    x = image_batch((40, 56))
    out = backend.run({"image": x})["logits"]
    assert out.dtype == np.float32
    assert relative_error(out, OnnxRuntimeBackend(tiny_onnx).run({"image": x})["logits"]) < tol
