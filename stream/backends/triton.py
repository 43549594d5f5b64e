"""Triton Inference Server as a remote backend: ``triton://host:port/model[/version]`` over gRPC.

The model's inputs and outputs come from the server's model metadata; its segstream
self-description from the model config's parameter ``segstream_metadata`` (the same JSON an
exported ONNX file embeds under ``METADATA_KEY``; ``export/triton_repo.py`` writes it). Each
``run`` is one gRPC ``ModelInfer`` call, so the server's dynamic batcher can merge the requests
of several clients.

Needs ``tritonclient[grpc]`` (``pip install 'tritonclient[grpc]'``, or the ``triton`` extra),
imported when a backend is opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from segstream.stream.backends.base import ArtifactMetadata, Backend, TensorSpec
from segstream.stream.errors import BackendError, ConfigError, ModelError

SCHEME = "triton://"

#: Model-config parameter that holds the artifact's metadata JSON.
TRITON_METADATA_PARAMETER = "segstream_metadata"

#: Triton's default gRPC port.
DEFAULT_GRPC_PORT = 8001

_TRITON_TO_NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
_NUMPY_TO_TRITON = {np.dtype(v): k for k, v in _TRITON_TO_NUMPY.items()}

_URI = re.compile(
    r"^triton://(?P<host>\[[^\]]+\]|[^:/\[\]]+)(?::(?P<port>[0-9]+))?/(?P<model>[^/]+)(?:/(?P<version>[0-9]+))?/?$"
)


@dataclass(frozen=True)
class TritonAddress:
    """A parsed ``triton://host[:port]/model[/version]``. ``version`` "" means the server's choice."""

    host: str
    port: int
    model: str
    version: str = ""

    @property
    def url(self) -> str:
        """``host:port`` as the gRPC client takes it."""
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{SCHEME}{self.url}/{self.model}" + (f"/{self.version}" if self.version else "")


def parse_triton_uri(uri: str) -> TritonAddress:
    """Splits ``triton://host[:port]/model[/version]`` (port default 8001; IPv6 hosts in brackets).

    Raises:
        ConfigError: the URI does not have that form.
    """
    m = _URI.match(str(uri))
    if m is None:
        raise ConfigError(
            f"{uri!r}: expected triton://host:port/model or triton://host:port/model/version "
            f"(for example triton://127.0.0.1:{DEFAULT_GRPC_PORT}/yolact)"
        )
    port = int(m["port"]) if m["port"] else DEFAULT_GRPC_PORT
    if not 0 < port < 65536:
        raise ConfigError(f"{uri!r}: port must be 1-65535, got {port}")
    return TritonAddress(m["host"], port, m["model"], m["version"] or "")


def _import_grpcclient() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        raise BackendError(
            "the Triton backend needs the Triton client: pip install 'tritonclient[grpc]' "
            "(or pip install 'segstream[triton]')"
        ) from None
    return grpcclient


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


class TritonBackend(Backend):
    """Runs a model on a Triton server through gRPC.

    Args:
        uri: ``triton://host:port/model[/version]``.
        timeout_s: limit for each call (connecting, metadata, one inference), seconds. A server
            that does not answer in time is an error, never a hang.

    Raises:
        ConfigError: malformed URI.
        BackendError: tritonclient missing, server unreachable or too slow, server not ready.
        ModelError: the server has no such model (or version), or its segstream metadata is broken.
    """

    name = "triton"

    def __init__(self, uri: str, *, timeout_s: float = 10.0) -> None:
        self.address = parse_triton_uri(uri)
        self.path = str(self.address)
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.device = f"triton {self.address.url}"
        grpcclient = _import_grpcclient()
        from tritonclient.utils import InferenceServerException

        self._exc_type = InferenceServerException
        self._grpc = grpcclient
        self._client: Any = None
        self._client = grpcclient.InferenceServerClient(self.address.url)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _call(self, what: str, fn, *args, **kwargs):
        """One client call with the timeout; transport failures become one-line BackendErrors."""
        try:
            return fn(*args, client_timeout=self.timeout_s, **kwargs)
        except self._exc_type as exc:
            status = str(exc.status() or "")
            if "DEADLINE_EXCEEDED" in status:
                raise BackendError(
                    f"{self.path}: no answer to {what} within {self.timeout_s:g} s; "
                    "check the address and that the server is up (or raise timeout_s)"
                ) from None
            if "UNAVAILABLE" in status:
                raise BackendError(
                    f"{self.path}: cannot reach a Triton server at {self.address.url} "
                    f"({_first_line(exc.message())}); start it or fix the address"
                ) from None
            raise

    def _open(self) -> None:
        a = self.address
        if not self._call("the liveness check", self._client.is_server_live):
            raise BackendError(f"{self.path}: the Triton server at {a.url} says it is not live; check its log")
        try:
            meta = self._call(
                "the model metadata request", self._client.get_model_metadata, a.model, a.version, as_json=True
            )
            config = self._call(
                "the model config request", self._client.get_model_config, a.model, a.version, as_json=True
            )
        except self._exc_type as exc:
            known = self._model_names()
            raise ModelError(
                f"{self.path}: the server at {a.url} cannot serve model {a.model!r}"
                f"{' version ' + a.version if a.version else ''} ({_first_line(exc.message())}); "
                f"it has {known or 'no models'}"
            ) from None
        if not self._call("the readiness check", self._client.is_model_ready, a.model, a.version):
            raise BackendError(f"{self.path}: model {a.model!r} is on the server but not ready; check the server's log")
        self.inputs = [self._spec(t) for t in meta.get("inputs", [])]
        self.outputs = [self._spec(t) for t in meta.get("outputs", [])]
        self._output_names = [t.name for t in self.outputs]
        self.versions = list(meta.get("versions", []))
        self.platform = meta.get("platform", "")
        params = config.get("config", config).get("parameters", {})
        text = params.get(TRITON_METADATA_PARAMETER, {}).get("string_value")
        self.metadata = ArtifactMetadata.from_json(text, origin=self.path) if text else None

    def _model_names(self) -> list[str]:
        try:
            index = self._call("the repository index request", self._client.get_model_repository_index, as_json=True)
        except (self._exc_type, BackendError):
            return []
        return sorted({m.get("name", "") for m in index.get("models", [])} - {""})

    def _spec(self, t: dict) -> TensorSpec:
        dtype = _TRITON_TO_NUMPY.get(t.get("datatype", ""))
        if dtype is None:
            raise ModelError(
                f"{self.path}: tensor {t.get('name')!r} has Triton type {t.get('datatype')!r}; "
                f"segstream reads only {sorted(_TRITON_TO_NUMPY)}"
            )
        shape = tuple(None if int(d) < 0 else int(d) for d in t.get("shape", []))
        return TensorSpec(t["name"], shape, np.dtype(dtype))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._client is None:
            raise BackendError(f"{self.path}: run after close")
        names = [t.name for t in self.inputs]
        if sorted(feeds) != sorted(names):
            raise BackendError(f"{self.path}: expected inputs {names}, got {sorted(feeds)}")
        inputs = []
        for name in names:
            arr = np.ascontiguousarray(feeds[name])
            datatype = _NUMPY_TO_TRITON.get(arr.dtype)
            if datatype is None:
                raise BackendError(f"{self.path}: input {name!r} has dtype {arr.dtype}, which Triton cannot take")
            item = self._grpc.InferInput(name, list(arr.shape), datatype)
            item.set_data_from_numpy(arr)
            inputs.append(item)
        requested = [self._grpc.InferRequestedOutput(n) for n in self._output_names]
        a = self.address
        try:
            result = self._call(
                "an inference request", self._client.infer, a.model, inputs, model_version=a.version, outputs=requested
            )
        except self._exc_type as exc:
            raise BackendError(f"{self.path}: the server refused the request ({_first_line(exc.message())})") from None
        return {n: result.as_numpy(n) for n in self._output_names}

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
