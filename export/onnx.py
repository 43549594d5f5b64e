"""torch -> ONNX with embedded segstream metadata. Plain functions, explicit keywords."""

from __future__ import annotations

import os
import warnings

import numpy as np

from segstream.stream.backends.base import METADATA_KEY, ArtifactMetadata


def export_versions() -> dict[str, str]:
    import onnx
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "segstream": _segstream_version()}


def _segstream_version() -> str:
    from segstream import __version__

    return __version__


def export_onnx(
    *,
    model,
    example_input,
    out_path: str,
    metadata: ArtifactMetadata,
    input_names: list[str],
    output_names: list[str],
    dynamic_hw: bool = False,
    opset: int = 18,
    output_dynamic_axes: dict[str, dict[int, str]] | None = None,
    dynamic_batch: bool = False,
) -> str:
    """Exports a torch module to one self-describing ONNX file.

    Args:
        model: torch.nn.Module in eval mode; its forward takes one (1, 3, H, W) float tensor.
        example_input: (1, 3, H, W) float32 tensor used for tracing.
        out_path: where to write the .onnx file (weights embedded, no .data side file).
        metadata: stored as JSON under the ``segstream`` metadata key.
        input_names / output_names: names of the graph inputs and outputs.
        dynamic_hw: make height and width of every input dynamic.
        opset: ONNX opset (18 with torch's exporter; see README).
        output_dynamic_axes: output name -> {axis: name} for outputs whose size depends on the
            data (the number of detections).
        dynamic_batch: make axis 0 of every input and output a dynamic batch axis, for models
            whose outputs are all batch-major (one row per image). The graph is traced at batch 2
            so that no batch-1 specialisation is baked in.

    Returns:
        out_path.
    """
    import onnx
    import torch

    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    dynamic_axes: dict[str, dict[int, str]] | None = None
    if dynamic_hw:
        dynamic_axes = {name: {2: "height", 3: "width"} for name in input_names}
    if output_dynamic_axes:
        dynamic_axes = {**(dynamic_axes or {}), **output_dynamic_axes}
    if dynamic_batch:
        if output_dynamic_axes and any(0 in axes for axes in output_dynamic_axes.values()):
            raise ValueError("dynamic_batch: axis 0 of an output is already data-dependent; its rows are not images")
        dynamic_axes = dict(dynamic_axes or {})
        for name in [*input_names, *output_names]:
            dynamic_axes[name] = {0: "batch", **dynamic_axes.get(name, {})}
        example_input = torch.cat([example_input, example_input], 0)
    with warnings.catch_warnings():
        # The legacy TorchScript exporter is the one that handles these models' control flow
        # and exports bilinear upsampling and dynamic sizes reliably; it warns it is deprecated.
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                model,
                (example_input,),
                out_path,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    proto = onnx.load(out_path)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = metadata.to_json()
    onnx.checker.check_model(proto)
    onnx.save(proto, out_path)
    return out_path


def read_metadata(path: str) -> ArtifactMetadata:
    """Reads the segstream metadata of an ONNX file (JSON only, nothing evaluated)."""
    import onnx

    from segstream.stream.errors import ModelError

    proto = onnx.load(path, load_external_data=False)
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            return ArtifactMetadata.from_json(p.value, origin=path)
    raise ModelError(f"{path}: no segstream metadata; export it with 'segstream export'")


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|b|), the agreement figure verify and the tests report."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))
