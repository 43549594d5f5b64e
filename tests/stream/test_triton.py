"""Triton as a remote backend: URI parsing, the model repository writer, and the client against a
real local tritonserver (the one inside nvidia-pytriton, Python backend running ONNX Runtime).

The server tests are opt-in: ``SEGSTREAM_TRITON=1`` (CI sets it). They create the server's own
environment on first use (``bench/triton_server.py setup``, about 2 minutes; numpy < 2 there).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import cv2
import numpy as np
import pytest

from segstream.stream.backends import open_backend
from segstream.stream.backends.base import METADATA_KEY, ArtifactMetadata
from segstream.stream.backends.triton import DEFAULT_GRPC_PORT, TritonAddress, parse_triton_uri
from segstream.stream.errors import BackendError, ConfigError, ModelError
from tests.conftest import ROOT

YOLACT_ONNX = os.path.join(ROOT, "weights", "yolact_tiny_synthetic.onnx")
DEEPLAB_ONNX = os.path.join(ROOT, "weights", "deeplab_tiny_synthetic.onnx")

SERVER_OPT_IN = os.environ.get("SEGSTREAM_TRITON") == "1"
needs_triton_server = pytest.mark.skipif(
    not SERVER_OPT_IN,
    reason="opt-in: set SEGSTREAM_TRITON=1 to start a real local tritonserver (creates .triton-venv on first use)",
)


# ------------------------------------------------------------------------------------------ URIs


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("triton://127.0.0.1:8001/yolact", TritonAddress("127.0.0.1", 8001, "yolact", "")),
        ("triton://localhost/deeplab", TritonAddress("localhost", DEFAULT_GRPC_PORT, "deeplab", "")),
        ("triton://server.example:9001/yolact/3", TritonAddress("server.example", 9001, "yolact", "3")),
        ("triton://[::1]:8001/m/", TritonAddress("[::1]", 8001, "m", "")),
        ("triton://gpu-box:8001/yolact_tiny-v2.onnx", TritonAddress("gpu-box", 8001, "yolact_tiny-v2.onnx", "")),
    ],
)
def test_parse_triton_uri(uri, expected):
    address = parse_triton_uri(uri)
    assert address == expected
    assert address.url == f"{expected.host}:{expected.port}"


@pytest.mark.parametrize(
    "uri",
    [
        "triton://127.0.0.1:8001",  # no model
        "triton://127.0.0.1:8001/",  # empty model
        "triton://:8001/yolact",  # no host
        "triton://host:0/yolact",  # port out of range
        "triton://host:99999/yolact",
        "triton://host:8001/yolact/latest",  # version must be a number
        "triton://host:8001/a/1/extra",  # too many parts
        "triton://host:port/yolact",
    ],
)
def test_parse_triton_uri_refuses(uri):
    with pytest.raises(ConfigError, match="expected triton://host:port/model|port must be"):
        parse_triton_uri(uri)


def test_open_backend_routes_triton_uris_by_scheme():
    # A malformed URI fails in parsing, before any client is imported or any connection made.
    with pytest.raises(ConfigError, match="expected triton://host:port/model"):
        open_backend("triton://127.0.0.1:8001")
    with pytest.raises(ConfigError, match="triton://"):
        open_backend("model.tflite")


def test_missing_tritonclient_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)  # makes the import fail as if not installed
    with pytest.raises(BackendError, match=r"pip install 'tritonclient\[grpc\]'"):
        open_backend("triton://127.0.0.1:8001/yolact")


# ---------------------------------------------------------------------- errors (no server needed)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nothing_listening_is_one_line_error():
    pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[grpc] (pip install 'segstream[triton]')")
    with pytest.raises(BackendError) as err:
        open_backend(f"triton://127.0.0.1:{_closed_port()}/yolact", timeout_s=5.0)
    msg = str(err.value)
    assert "cannot reach a Triton server" in msg and "\n" not in msg


def test_silent_server_times_out_instead_of_hanging():
    pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[grpc] (pip install 'segstream[triton]')")
    # A socket that accepts connections but never speaks gRPC: only the deadline ends the call.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(BackendError, match=r"no answer to the liveness check within 0.5 s") as err:
            open_backend(f"triton://127.0.0.1:{port}/yolact", timeout_s=0.5)
        assert time.monotonic() - t0 < 10.0
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------- repository writer


def _config_schema():
    """Triton's own ModelConfig protobuf module (shipped in tritonclient)."""
    return pytest.importorskip(
        "tritonclient.grpc.model_config_pb2",
        reason="needs tritonclient[grpc] for Triton's ModelConfig schema (pip install 'segstream[triton]')",
    )


def _parse_config(model_dir: str):
    from google.protobuf import text_format

    with open(os.path.join(model_dir, "config.pbtxt"), encoding="utf-8") as fh:
        return text_format.Parse(fh.read(), _config_schema().ModelConfig())


def _embedded_metadata(path: str) -> str:
    import onnx

    props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    return props[METADATA_KEY]


@pytest.mark.parametrize(
    "artifact, name, dims_in, outputs",
    [
        (
            YOLACT_ONNX,
            "yolact",
            [1, 3, 512, 512],
            {"boxes": [1, 16368, 4], "scores": [1, 16368, 3], "coeffs": [1, 16368, 16], "protos": [1, 128, 128, 16]},
        ),
        (DEEPLAB_ONNX, "deeplab", [1, 3, -1, -1], {"logits": [-1, -1, -1, -1], "labels": [-1, -1, -1]}),
    ],
)
def test_repo_for_embedded_models(tmp_path, artifact, name, dims_in, outputs):
    pytest.importorskip("onnx")
    from segstream.export.triton_repo import write_triton_repo

    pb = _config_schema()
    model_dir = write_triton_repo(artifact, str(tmp_path / "repo"), name, max_queue_delay_us=300)
    assert model_dir == str(tmp_path / "repo" / name)
    cfg = _parse_config(model_dir)
    assert cfg.name == name and cfg.platform == "onnxruntime_onnx"
    # Both embedded artifacts have a fixed batch of 1: no batching, full shapes.
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert [(t.name, list(t.dims), t.data_type) for t in cfg.input] == [("image", dims_in, pb.TYPE_FP32)]
    assert {t.name: list(t.dims) for t in cfg.output} == outputs
    text = cfg.parameters["segstream_metadata"].string_value
    assert text == _embedded_metadata(artifact)
    assert ArtifactMetadata.from_json(text).model == json.loads(_embedded_metadata(artifact))["model"]
    with open(artifact, "rb") as a, open(os.path.join(model_dir, "1", "model.onnx"), "rb") as b:
        assert a.read() == b.read()


def _dynamic_batch_onnx(path: str, metadata_json: str) -> str:
    """A real two-op ONNX graph with a dynamic batch dim and a uint8 output."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 48])
    y = helper.make_tensor_value_info("doubled", TensorProto.FLOAT, ["N", 3, 32, 48])
    z = helper.make_tensor_value_info("mask", TensorProto.UINT8, ["N", 32, 48])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    nodes = [
        helper.make_node("Mul", ["image", "two"], ["doubled"]),
        helper.make_node("ReduceMax", ["image"], ["m"], axes=[1], keepdims=0),
        helper.make_node("Cast", ["m"], ["mask"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y, z], initializer=[two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata_json
    onnx.save(model, path)
    return path


def _awkward_metadata() -> str:
    # Quotes, backslashes, a newline, a tab and non-ASCII names: the text format must carry them intact.
    meta = ArtifactMetadata(
        model='tiny "q" \\ model',
        task="semantic",
        class_names=("road\nside", "caf\u00e9\t", "\u8def"),
        input_size_hw=(32, 48),
        mean=(1.0, 2.0, 3.0),
        std=(4.0, 5.0, 6.0),
    )
    return json.dumps({**json.loads(meta.to_json()), "class_names": list(meta.class_names)}, ensure_ascii=False)


def test_repo_dynamic_batching_and_escaping(tmp_path):
    pytest.importorskip("onnx")
    from segstream.export.triton_repo import write_triton_repo

    text = _awkward_metadata()
    onnx_path = _dynamic_batch_onnx(str(tmp_path / "dyn.onnx"), text)
    model_dir = write_triton_repo(onnx_path, str(tmp_path / "repo"), max_queue_delay_us=250, max_batch_size=4)
    cfg = _parse_config(model_dir)
    assert cfg.name == "dyn"
    assert cfg.max_batch_size == 4
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 250
    # With batching, dims leave the batch dimension out.
    assert [list(t.dims) for t in cfg.input] == [[3, 32, 48]]
    assert {t.name: list(t.dims) for t in cfg.output} == {"doubled": [3, 32, 48], "mask": [32, 48]}
    assert cfg.parameters["segstream_metadata"].string_value == text
    assert ArtifactMetadata.from_json(text).class_names == ("road\nside", "caf\u00e9\t", "\u8def")


def test_repo_python_platform(tmp_path):
    pytest.importorskip("onnx")
    from segstream.export.triton_repo import write_triton_repo

    pb = _config_schema()
    cfg = _parse_config(write_triton_repo(YOLACT_ONNX, str(tmp_path), "y", platform="python"))
    assert cfg.backend == "python" and cfg.platform == ""
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 1)]
    assert os.path.isfile(tmp_path / "y" / "1" / "model.onnx")


def test_repo_for_tensorrt_engine(tmp_path):
    """An engine's repository declares I/O from the ONNX it was built from (named in its side
    file) and carries the side document; the engine bytes are copied, never read."""
    pytest.importorskip("onnx")
    from segstream.export.triton_repo import write_triton_repo

    onnx_path = _dynamic_batch_onnx(str(tmp_path / "dyn.onnx"), _awkward_metadata())
    engine = tmp_path / "dyn.engine"
    engine.write_bytes(b"serialized engine bytes")
    side = {
        **json.loads(_awkward_metadata()),
        "engine": {
            "onnx": "dyn.onnx",
            "precision": "fp16",
            "profiles": {"image": [[1, 3, 32, 48], [2, 3, 32, 48], [3, 3, 32, 48]]},
        },
    }
    (tmp_path / "dyn.engine.json").write_text(json.dumps(side))
    model_dir = write_triton_repo(str(engine), str(tmp_path / "repo"), max_batch_size=8)
    cfg = _parse_config(model_dir)
    assert cfg.platform == "tensorrt_plan"
    assert cfg.max_batch_size == 3  # capped at the profile's largest batch
    assert (tmp_path / "repo" / "dyn" / "1" / "model.plan").read_bytes() == b"serialized engine bytes"
    doc = json.loads(cfg.parameters["segstream_metadata"].string_value)
    assert doc["engine"]["precision"] == "fp16"
    assert ArtifactMetadata.from_json(json.dumps(doc)).input_size_hw == (32, 48)
    os.remove(onnx_path)
    with pytest.raises(ModelError, match="pass source_onnx="):
        write_triton_repo(str(engine), str(tmp_path / "repo2"))


@pytest.mark.parametrize(
    "artifact, kwargs, error, match",
    [
        ("model.tflite", {}, ConfigError, "cannot tell the Triton platform"),
        (YOLACT_ONNX, {"platform": "tensorrt_plan"}, ConfigError, "does not run a .onnx file"),
        (YOLACT_ONNX, {"platform": "tensorflow_savedmodel"}, ConfigError, "platform must be one of"),
        ("absent.onnx", {}, ModelError, "no such file"),
        (YOLACT_ONNX, {"name": "../escape"}, ConfigError, "plain folder name"),
    ],
)
def test_repo_refusals(tmp_path, artifact, kwargs, error, match):
    from segstream.export.triton_repo import write_triton_repo

    with pytest.raises(error, match=match):
        write_triton_repo(
            str(tmp_path / artifact) if artifact.startswith(("model.", "absent")) else artifact,
            str(tmp_path / "repo"),
            **kwargs,
        )


# ------------------------------------------------------------------------- against a real server


def _clip_frames(tmp_path_factory, n: int = 6) -> list[np.ndarray]:
    """A short generated road clip (cars, people) written to an MJPG file and decoded back."""
    from segstream.models.synthetic.scene import SceneConfig, SceneSequence

    path = str(tmp_path_factory.mktemp("clip") / "road.avi")
    seq = SceneSequence(4, SceneConfig(width=640, height=360))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 360))
    for _ in range(n):
        writer.write(seq.next_sample().image_bgr)
    writer.release()
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    assert len(frames) == n
    return frames


@pytest.fixture(scope="module")
def triton_server(tmp_path_factory):
    from bench.triton_server import TritonServer, ensure_env, write_python_model_repo

    env = ensure_env()
    repo = str(tmp_path_factory.mktemp("triton") / "models")
    write_python_model_repo(repo, {"yolact": YOLACT_ONNX, "deeplab": DEEPLAB_ONNX}, env=env, threads=1)
    with TritonServer(repo, env) as server:
        yield server


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return _clip_frames(tmp_path_factory)


def _local(path):
    return open_backend(path, providers=["cpu"], intra_op_threads=1, inter_op_threads=1)


@needs_triton_server
@pytest.mark.parametrize("model, artifact", [("yolact", YOLACT_ONNX), ("deeplab", DEEPLAB_ONNX)])
def test_metadata_and_io_come_from_the_server(triton_server, model, artifact):
    remote = open_backend(f"triton://{triton_server.url}/{model}")
    local = _local(artifact)
    try:
        assert remote.metadata == local.metadata
        assert remote.platform == "python" and remote.versions == ["1"]
        assert [(t.name, t.dtype) for t in remote.inputs] == [(t.name, t.dtype) for t in local.inputs]
        assert [(t.name, t.dtype) for t in remote.outputs] == [(t.name, t.dtype) for t in local.outputs]
        # Fixed dims as in the ONNX graph; named dynamic dims come back as None.
        assert [t.shape for t in remote.inputs] == [
            tuple(d if isinstance(d, int) else None for d in t.shape) for t in local.inputs
        ]
    finally:
        remote.close()
        local.close()


@needs_triton_server
def test_same_outputs_as_local_onnxruntime(triton_server, clip):
    from segstream.pipelines.tasks.road import SemanticRunner
    from segstream.pipelines.tasks.yolact import YolactRunner

    for model, artifact, runner_type in (
        ("yolact", YOLACT_ONNX, YolactRunner),
        ("deeplab", DEEPLAB_ONNX, SemanticRunner),
    ):
        remote = open_backend(f"triton://{triton_server.url}/{model}")
        local = _local(artifact)
        preprocess = runner_type(local).preprocess
        for img in clip:
            feeds, _ = preprocess(img)
            got, want = remote.run(feeds), local.run(feeds)
            assert sorted(got) == sorted(want)
            for name in want:
                assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
                np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=f"{model}:{name}")
        remote.close()
        local.close()


@needs_triton_server
def test_yolact_runner_same_detections(triton_server, clip):
    from segstream.pipelines.tasks.yolact import YolactRunner

    remote = YolactRunner(open_backend(f"triton://{triton_server.url}/yolact"))
    local = YolactRunner(_local(YOLACT_ONNX))
    found = 0
    for img in clip:
        a, b = remote(img), local(img)
        assert len(a.boxes_xyxy) == len(b.boxes_xyxy)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.boxes_xyxy, b.boxes_xyxy, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        np.testing.assert_array_equal(a.masks, b.masks)
        found += len(a.boxes_xyxy)
    assert found > 0, "the clip gave no detections: the comparison would prove nothing"


@needs_triton_server
def test_semantic_runner_same_class_maps(triton_server, clip):
    from segstream.pipelines.tasks.road import SemanticRunner

    remote = SemanticRunner(open_backend(f"triton://{triton_server.url}/deeplab"))
    local = SemanticRunner(_local(DEEPLAB_ONNX))
    for img in clip:
        a, b = remote(img), local(img)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        assert a.class_names == b.class_names
    assert len(np.unique(a.class_ids)) > 1


@needs_triton_server
def test_unknown_model_is_one_line_error(triton_server):
    with pytest.raises(ModelError, match=r"cannot serve model 'nope'.*it has \['deeplab', 'yolact'\]") as err:
        open_backend(f"triton://{triton_server.url}/nope")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="'yolact' version 9"):
        open_backend(f"triton://{triton_server.url}/yolact/9")


@needs_triton_server
def test_bad_request_and_closed_backend(triton_server):
    backend = open_backend(f"triton://{triton_server.url}/yolact")
    with pytest.raises(BackendError, match=r"refused the request .*Expected \[1,3,512,512\]"):
        backend.run({"image": np.zeros((1, 3, 64, 64), np.float32)})
    with pytest.raises(BackendError, match=r"expected inputs \['image'\]"):
        backend.run({"img": np.zeros((1, 3, 512, 512), np.float32)})
    backend.close()
    backend.close()
    with pytest.raises(BackendError, match="run after close"):
        backend.run({"image": np.zeros((1, 3, 512, 512), np.float32)})


def test_export_format_triton_repo_from_an_exported_artifact(tmp_path):
    import subprocess

    from tests.conftest import segstream_cmd

    repo = tmp_path / "repo"
    out = subprocess.run(
        segstream_cmd(
            "export", "--model", "yolact_tiny", "--weights", YOLACT_ONNX, "--format", "triton-repo", "--out", str(repo)
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "triton://HOST:8001/yolact_tiny" in out.stdout
    config = (repo / "yolact_tiny" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "segstream_metadata" in config
    assert (repo / "yolact_tiny" / "1" / "model.onnx").read_bytes() == open(YOLACT_ONNX, "rb").read()


@needs_triton_server
def test_the_public_api_and_the_dashcam_pipeline_run_on_a_triton_artifact(triton_server, tmp_path):
    import segstream

    runner = segstream.load_runner(f"triton://{triton_server.url}/deeplab")
    assert runner.task == "semantic"
    img = np.zeros((120, 160, 3), np.uint8)
    assert runner(img).class_ids.shape == (120, 160)
    runner.close()
    config = {
        "source": {"uri": "synthetic://?width=320&height=180&fps=10&frames=4"},
        "pipeline": {"name": "dashcam"},
        "output": {"uris": [str(tmp_path / "r.jsonl")]},
        "instances": {"artifact": f"triton://{triton_server.url}/yolact"},
        "semantic": {"artifact": f"triton://{triton_server.url}/deeplab"},
        "schedule": {"enabled": False},
        "runtime": {"progress": False},
    }
    with segstream.open_pipeline(config) as pipe:
        report = pipe.run()
    assert report.error is None and report.frames == 4
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 4
