"""A ``Backend`` around a torch module: the reference for export checks, and the way to use a
GPU where neither onnxruntime-gpu nor TensorRT is installed.

It lives on the build side (``models/``) because it imports torch; the runtime (``stream/``,
``pipelines/``) only sees the ``Backend`` interface and never imports this module itself.
"""

from __future__ import annotations

import logging

import numpy as np

from segstream.stream.backends.base import ArtifactMetadata, Backend, TensorSpec
from segstream.stream.errors import BackendError, ModelError

log = logging.getLogger(__name__)


class TorchBackend(Backend):
    """Runs an ``nn.Module`` with numpy in and numpy out, like the exported artifact would.

    Args:
        module: the model; its forward takes the inputs positionally in ``input_names`` order
            and returns a tensor, a tuple/list of tensors, or a dict with ``output_names`` keys.
        input_names: names of the inputs, each an (N, 3, H, W) image tensor.
        output_names: names given to the outputs, in the order the module returns them.
        device: "cpu", "cuda" or "cuda:N".
        precision: "fp32", or "fp16" (CUDA only: half weights and inputs; floating outputs
            come back as float32 so callers see the same dtypes as from the fp32 artifact).
        channels_last: NHWC memory format for the weights and 4-D inputs (faster convolutions
            on CPU and on tensor cores).
        metadata: what the artifact built from this model would say about itself, if known.

    Attributes:
        device: the torch device it runs on, for example "cpu" or "cuda:0".
    """

    name = "torch"

    def __init__(
        self,
        module,
        *,
        input_names: list[str],
        output_names: list[str],
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: bool = True,
        metadata: ArtifactMetadata | None = None,
    ) -> None:
        import torch

        if precision not in ("fp32", "fp16"):
            raise BackendError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
        if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
            raise BackendError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(
                f"device {device!r} asked for, but torch sees no CUDA GPU (torch {torch.__version__}); "
                "use device='cpu' or install a CUDA build of torch on a machine with an NVIDIA GPU"
            )
        if precision == "fp16" and not device.startswith("cuda"):
            raise BackendError(
                "precision 'fp16' needs device='cuda' (half-precision kernels are slow or missing on CPU); use 'fp32' on CPU"
            )
        if not input_names or not output_names:
            raise BackendError("input_names and output_names must name at least one tensor each")
        self._torch = torch
        self._device = torch.device(device)
        if self._device.type == "cuda" and self._device.index is None:
            self._device = torch.device("cuda", torch.cuda.current_device())
        self.device = str(self._device)
        self.precision = precision
        self.channels_last = bool(channels_last)
        self.path = f"<torch {type(module).__name__}>"
        self.metadata = metadata
        self.inputs = [TensorSpec(n, ("N", 3, "H", "W"), np.dtype(np.float32)) for n in input_names]
        # Output shapes are only known after a call; the rank is left open.
        self.outputs = [TensorSpec(n, (), np.dtype(np.float32)) for n in output_names]
        self._output_names = list(output_names)
        module = module.eval().to(self._device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if precision == "fp16":
            module = module.half()
        self._module = module
        log.info(
            "torch: %s runs on %s (%s%s)",
            type(module).__name__,
            self.device,
            precision,
            ", channels_last" if self.channels_last else "",
        )

    def _to_tensor(self, arr: np.ndarray):
        torch = self._torch
        t = torch.from_numpy(np.ascontiguousarray(arr)).to(self._device)
        if self.precision == "fp16" and t.is_floating_point():
            t = t.half()
        if self.channels_last and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the module under ``torch.inference_mode``.

        Args:
            feeds: input name -> (N, 3, H, W) float32 array.

        Returns:
            output name -> host numpy array (float32 for floating outputs).
        """
        if self._module is None:
            raise BackendError(f"{self.path}: run after close")
        names = [t.name for t in self.inputs]
        if sorted(feeds) != sorted(names):
            raise ModelError(f"{self.path}: expected inputs {names}, got {sorted(feeds)}")
        torch = self._torch
        with torch.inference_mode():
            result = self._module(*[self._to_tensor(feeds[n]) for n in names])
        if isinstance(result, torch.Tensor):
            values = [result]
        elif isinstance(result, dict):
            missing = [n for n in self._output_names if n not in result]
            if missing:
                raise ModelError(f"{self.path}: the module returned keys {sorted(result)}, missing {missing}")
            values = [result[n] for n in self._output_names]
        elif isinstance(result, (tuple, list)):
            values = list(result)
        else:
            raise ModelError(f"{self.path}: the module returned {type(result).__name__}; expected tensors")
        if len(values) != len(self._output_names):
            raise ModelError(f"{self.path}: the module returned {len(values)} outputs, expected {self._output_names}")
        out = {}
        for name, v in zip(self._output_names, values):
            if v.is_floating_point():
                v = v.float()
            out[name] = v.contiguous().cpu().numpy()
        return out

    def close(self) -> None:
        self._module = None
