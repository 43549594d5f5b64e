"""An exported artifact -> a Triton model repository that NVIDIA's Triton container serves as is.

Layout written (Triton's own)::

    <repo>/<name>/config.pbtxt
    <repo>/<name>/1/model.onnx        (platform onnxruntime_onnx, or backend python)
    <repo>/<name>/1/model.plan        (platform tensorrt_plan)

``config.pbtxt`` names the platform, the inputs and outputs with the dims and types of the
ONNX graph, the batching, and the artifact's self-description as the model parameter
``segstream_metadata`` (the same JSON the ONNX file embeds under ``METADATA_KEY``), which
``TritonBackend`` reads back from the server's model config.

Batching: an artifact whose inputs all have a dynamic first dimension gets ``max_batch_size``
(dims then leave the batch dimension out) and ``dynamic_batching { max_queue_delay_microseconds }``,
so the server merges concurrent requests; any other artifact gets ``max_batch_size: 0`` and the
full shapes. Dynamic dims are written as -1.

``platform="python"`` writes the same config for Triton's Python backend (``backend: "python"``,
one CPU instance) with the ONNX file beside the ``model.py`` the caller supplies: that is what
the CPU-only server inside ``nvidia-pytriton`` can run (see ``bench/triton_server.py``).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

from segstream.stream.backends.base import METADATA_KEY, ArtifactMetadata
from segstream.stream.backends.triton import TRITON_METADATA_PARAMETER
from segstream.stream.errors import ConfigError, ModelError

#: platform -> (config line, file name in the version folder).
PLATFORMS = {
    "onnxruntime_onnx": ('platform: "onnxruntime_onnx"', "model.onnx"),
    "tensorrt_plan": ('platform: "tensorrt_plan"', "model.plan"),
    "python": ('backend: "python"', "model.onnx"),
}

# ONNX TensorProto element types -> Triton data types.
_ONNX_TO_TRITON = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    4: "TYPE_UINT16",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    12: "TYPE_UINT32",
    13: "TYPE_UINT64",
}


@dataclass(frozen=True)
class TensorDecl:
    """One graph input or output: name, Triton data type, dims (-1 for dynamic), batch dim included."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class OnnxIO:
    """What a repository needs from an ONNX file.

    Attributes:
        inputs / outputs: graph tensors in graph order (initialisers listed as inputs left out).
        metadata_json: the segstream metadata exactly as embedded (checked to parse), or None.
        external_data: file names of weights kept outside the graph, relative to its folder.
    """

    inputs: list[TensorDecl]
    outputs: list[TensorDecl]
    metadata_json: str | None
    external_data: tuple[str, ...]


def onnx_io(onnx_path: str) -> OnnxIO:
    """Reads an ONNX file's inputs, outputs and segstream metadata with ``onnx`` (no session)."""
    import onnx

    if not os.path.isfile(onnx_path):
        raise ModelError(f"{onnx_path}: no such ONNX file; export one with 'segstream export --format onnx'")
    proto = onnx.load(onnx_path, load_external_data=False)
    init = {t.name for t in proto.graph.initializer}

    def decls(values) -> list[TensorDecl]:
        out = []
        for v in values:
            if v.name in init:
                continue
            t = v.type.tensor_type
            if t.elem_type not in _ONNX_TO_TRITON:
                raise ModelError(
                    f"{onnx_path}: tensor {v.name!r} has ONNX element type {t.elem_type}, "
                    f"which Triton has no type for (expected one of {sorted(_ONNX_TO_TRITON)})"
                )
            dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in t.shape.dim)
            out.append(TensorDecl(v.name, _ONNX_TO_TRITON[t.elem_type], dims))
        return out

    meta = None
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            ArtifactMetadata.from_json(p.value, origin=onnx_path)  # refuse to publish broken metadata
            meta = p.value
    external = sorted(
        {
            e.value
            for t in proto.graph.initializer
            if t.data_location == onnx.TensorProto.EXTERNAL
            for e in t.external_data
            if e.key == "location"
        }
    )
    return OnnxIO(decls(proto.graph.input), decls(proto.graph.output), meta, tuple(external))


def _pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _tensor_block(kind: str, tensors: list[TensorDecl], batched: bool) -> str:
    items = []
    for t in tensors:
        dims = t.dims[1:] if batched else t.dims
        items.append(
            f"  {{\n    name: {_pbtxt_string(t.name)}\n    data_type: {t.data_type}\n"
            f"    dims: [ {', '.join(str(d) for d in dims)} ]\n  }}"
        )
    return f"{kind} [\n" + ",\n".join(items) + "\n]\n"


def triton_config_text(
    name: str,
    platform: str,
    inputs: list[TensorDecl],
    outputs: list[TensorDecl],
    metadata_json: str | None,
    *,
    max_batch_size: int,
    max_queue_delay_us: int,
) -> str:
    """The ``config.pbtxt`` text. ``max_batch_size`` 0 means no batching (full shapes in dims).

    Args:
        name: model name (the folder name; Triton requires them to match).
        platform: a key of ``PLATFORMS``.
        inputs / outputs: tensors with their batch dimension included.
        metadata_json: the artifact's metadata JSON, or None to leave the parameter out.
        max_batch_size: 0, or the most requests the dynamic batcher may merge.
        max_queue_delay_us: how long the batcher may hold a request waiting for others, microseconds.
    """
    batched = max_batch_size > 0
    lines = [f"name: {_pbtxt_string(name)}", PLATFORMS[platform][0], f"max_batch_size: {int(max_batch_size)}"]
    text = "\n".join(lines) + "\n"
    text += _tensor_block("input", inputs, batched)
    text += _tensor_block("output", outputs, batched)
    if batched:
        text += f"dynamic_batching {{\n  max_queue_delay_microseconds: {int(max_queue_delay_us)}\n}}\n"
    if platform == "python":
        # The Python backend would otherwise place an instance per GPU; its model.py runs ONNX
        # Runtime on the CPU.
        text += "instance_group [\n  {\n    kind: KIND_CPU\n    count: 1\n  }\n]\n"
    if metadata_json is not None:
        text += (
            f"parameters {{\n  key: {_pbtxt_string(TRITON_METADATA_PARAMETER)}\n"
            f"  value {{ string_value: {_pbtxt_string(metadata_json)} }}\n}}\n"
        )
    return text


def _engine_source(engine_path: str, source_onnx: str | None) -> tuple[str, dict]:
    """The ONNX file an engine was built from (for I/O declarations) and the engine's side document."""
    from segstream.stream.backends.tensorrt import read_engine_document

    doc = read_engine_document(engine_path) or {}
    if source_onnx is None:
        onnx_name = doc.get("engine", {}).get("onnx")
        candidate = os.path.join(os.path.dirname(os.path.abspath(engine_path)), onnx_name) if onnx_name else None
        if candidate is None or not os.path.isfile(candidate):
            raise ModelError(
                f"{engine_path}: the ONNX file it was built from ({onnx_name or 'not named in its side file'}) "
                "is not beside it; pass source_onnx= so the repository can declare inputs and outputs"
            )
        source_onnx = candidate
    return source_onnx, doc


def write_triton_repo(
    artifact: str,
    repo_dir: str,
    name: str | None = None,
    *,
    max_queue_delay_us: int = 100,
    max_batch_size: int = 8,
    platform: str | None = None,
    source_onnx: str | None = None,
    version: int = 1,
) -> str:
    """Writes ``<repo_dir>/<name>/config.pbtxt`` and ``<repo_dir>/<name>/<version>/model.*``.

    Args:
        artifact: an exported ``.onnx`` file, or a TensorRT ``.engine``/``.plan`` with its
            ``<engine>.json`` side file.
        repo_dir: the model repository (created if missing; other models in it are kept).
        name: model name; default: the artifact's file name without suffix.
        max_queue_delay_us: dynamic batching delay, microseconds (only with a dynamic batch dim).
        max_batch_size: the batcher's limit when the artifact has a dynamic batch dim; for an
            engine, capped at its optimisation profile's largest batch.
        platform: "onnxruntime_onnx", "tensorrt_plan" or "python"; default from the suffix.
        source_onnx: engines only: the ONNX file the engine was built from (default: the one
            its side file names, beside it).
        version: the version folder to write.

    Returns:
        the model's folder.
    """
    artifact = str(artifact)
    suffix = os.path.splitext(artifact)[1].lower()
    if platform is None:
        platform = {".onnx": "onnxruntime_onnx", ".engine": "tensorrt_plan", ".plan": "tensorrt_plan"}.get(suffix)
        if platform is None:
            raise ConfigError(
                f"{artifact}: cannot tell the Triton platform from {suffix!r}; "
                "expected a .onnx, .engine or .plan file, or pass platform="
            )
    if platform not in PLATFORMS:
        raise ConfigError(f"platform must be one of {sorted(PLATFORMS)}, got {platform!r}")
    is_engine = platform == "tensorrt_plan"
    if is_engine != (suffix in (".engine", ".plan")):
        raise ConfigError(f"{artifact}: platform {platform!r} does not run a {suffix or 'suffix-less'} file")
    if not os.path.isfile(artifact):
        raise ModelError(f"{artifact}: no such file; export one with 'segstream export'")
    if max_batch_size < 1 or max_queue_delay_us < 0:
        raise ConfigError(
            f"max_batch_size must be >= 1 and max_queue_delay_us >= 0, got {max_batch_size} and {max_queue_delay_us}"
        )
    name = name or os.path.splitext(os.path.basename(artifact))[0]
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"model name must be a plain folder name, got {name!r}")

    if is_engine:
        onnx_path, doc = _engine_source(artifact, source_onnx)
        io = onnx_io(onnx_path)
        # The whole side document: ArtifactMetadata.from_json reads what it knows and ignores
        # the "engine" block (precision, profiles), which a client may still want to see.
        metadata_json = json.dumps(doc, sort_keys=True) if doc else None
        profiles = doc.get("engine", {}).get("profiles", {})
        profile_max = [p[2][0] for p in profiles.values() if p and len(p) == 3 and p[2]]
        if profile_max:
            max_batch_size = min(max_batch_size, min(int(b) for b in profile_max))
    else:
        io = onnx_io(artifact)
        metadata_json = io.metadata_json
    inputs, outputs = io.inputs, io.outputs
    dynamic_batch = bool(inputs) and all(t.dims and t.dims[0] == -1 for t in inputs)
    text = triton_config_text(
        name,
        platform,
        inputs,
        outputs,
        metadata_json,
        max_batch_size=max_batch_size if dynamic_batch else 0,
        max_queue_delay_us=max_queue_delay_us,
    )

    model_dir = os.path.join(str(repo_dir), name)
    version_dir = os.path.join(model_dir, str(int(version)))
    os.makedirs(version_dir, exist_ok=True)
    shutil.copyfile(artifact, os.path.join(version_dir, PLATFORMS[platform][1]))
    if not is_engine:
        # Weights kept outside the graph are found by the relative names it stores.
        for rel in io.external_data:
            src = os.path.join(os.path.dirname(os.path.abspath(artifact)), rel)
            if not os.path.isfile(src):
                raise ModelError(f"{artifact}: its weights file {rel!r} is missing beside it")
            dst = os.path.join(version_dir, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
    with open(os.path.join(model_dir, "config.pbtxt"), "w", encoding="utf-8") as fh:
        fh.write(text)
    return model_dir
