"""Several sources through the application: the CLI's repeated --source, [source] uris, per-source
outputs and metrics, a failing source isolated, and the control interface over real HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from segstream.pipelines.apps.app import RunOptions, config_for, control_for, make_graph
from segstream.stream.errors import ConfigError
from tests.conftest import ROOT, count_video_frames, segstream_cmd

ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def synth_uri(frames: int, live: bool = False, seed: int = 0, fps: float = 30.0) -> str:
    return f"synthetic://?width=64&height=48&frames={frames}&live={int(live)}&seed={seed}&fps={fps}"


def _run(*args, timeout=120):
    return subprocess.run(segstream_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ENV)


def test_run_with_two_sources_writes_per_source_outputs_and_metrics(tmp_path):
    metrics = tmp_path / "m.json"
    out = _run(
        "run",
        "--source",
        synth_uri(9),
        "--source",
        synth_uri(6, seed=1),
        "--pipeline",
        "edges",
        "--output",
        str(tmp_path / "{source}.avi"),
        "--output",
        str(tmp_path / "all.jsonl"),
        "--metrics-json",
        str(metrics),
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    assert count_video_frames(str(tmp_path / "cam0.avi")) == 9
    assert count_video_frames(str(tmp_path / "cam1.avi")) == 6
    rows = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text().splitlines()]
    for sid, n in (("cam0", 9), ("cam1", 6)):
        assert [r["frame"] for r in rows if r["source"] == sid] == list(range(n))
    doc = json.loads(metrics.read_text())
    assert doc["frames_out"] == 15 and set(doc["sources"]) == {"cam0", "cam1"}
    assert doc["sources"]["cam0"]["frames_out"] == 9 and doc["sources"]["cam1"]["frames_out"] == 6
    assert all(s["state"] == "ended" and s["latency_ms"]["p95"] > 0 for s in doc["sources"].values())


def test_a_source_that_fails_leaves_the_others_running_and_exits_1(tmp_path):
    out = _run(
        "run",
        "--source",
        synth_uri(5),
        "--source",
        str(tmp_path / "missing.mp4"),
        "--pipeline",
        "edges",
        "--output",
        str(tmp_path / "{source}.jsonl"),
        "--quiet",
    )
    assert out.returncode == 1
    assert "source 'cam1' failed and was removed" in out.stderr
    assert len((tmp_path / "cam0.jsonl").read_text().splitlines()) == 5
    assert not (tmp_path / "cam1.jsonl").exists()


def test_one_source_keeps_the_one_source_graph():
    config = config_for(RunOptions(source=("synthetic://?width=32&height=24&frames=3",), pipeline="edges"))
    assert config.source.all_uris() == ["synthetic://?width=32&height=24&frames=3"]
    graph = make_graph(config)
    assert graph.source_ids() == ["synthetic://32x24"] and graph.on_source_error == "fail"
    assert RunOptions(source="a.mp4").source == ("a.mp4",)  # a plain string is one source


def test_source_uris_in_the_config_give_cam_ids_and_the_cli_wins():
    uris = [synth_uri(3), synth_uri(3, seed=1), synth_uri(3, seed=2)]
    config = config_for(RunOptions(overrides=(f"source.uris={json.dumps(uris)}",), pipeline="edges"))
    graph = make_graph(config)
    assert graph.source_ids() == ["cam0", "cam1", "cam2"] and graph.on_source_error == "isolate"
    report = graph.run(timeout=60)
    assert report.error is None and report.metrics["frames_out"] == 9
    one = config_for(RunOptions(source=(synth_uri(2),), overrides=(f"source.uris={json.dumps(uris)}",)))
    assert one.source.all_uris() == [synth_uri(2)]
    with pytest.raises(ConfigError, match="source.uris"):
        config_for(RunOptions(overrides=('source.uris=["", "x.mp4"]',)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(method: str, url: str, body: dict | None = None, token: str | None = "s3cret"):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_control_interface_lists_adds_and_removes_sources_over_http(tmp_path):
    port = _free_port()
    config = config_for(
        RunOptions(
            source=(synth_uri(0, live=True, fps=40), synth_uri(0, live=True, seed=1, fps=40)),
            pipeline="edges",
            outputs=(str(tmp_path / "{source}.jsonl"),),
            overrides=(f"control.port={port}", "control.token=s3cret"),
        )
    )
    graph = make_graph(config)
    control = control_for(config, graph)
    assert control is not None
    control.open()
    runner = threading.Thread(target=lambda: setattr(graph, "test_report", graph.run(timeout=60)))
    runner.start()
    base = f"http://127.0.0.1:{port}/sources"
    try:
        _wait_for(lambda: _call("GET", base)[1]["sources"]["cam1"]["frames_out"] >= 3)
        assert _call("GET", base, token=None)[0] == 401
        assert _call("GET", base, token="wrong")[0] == 401
        assert _call("GET", base + "?token=s3cret", token=None)[0] == 200
        status, doc = _call("POST", base, {"uri": synth_uri(0, live=True, seed=2, fps=40), "id": "door"})
        assert (status, doc) == (201, {"id": "door"})
        _wait_for(lambda: _call("GET", base + "/door")[1]["frames_out"] >= 3)
        assert _call("POST", base, {"uri": synth_uri(0, live=True), "id": "door"})[0] == 409
        assert _call("POST", base, {"uri": str(tmp_path / "missing.mp4")})[0] == 422
        assert _call("POST", base, {"url": "x"})[0] == 400
        assert _call("POST", base, {"uri": "bogus://x"})[0] == 400
        status, doc = _call("DELETE", base + "/cam0")
        assert (status, doc) == (200, {"id": "cam0", "drained": True})
        assert _call("DELETE", base + "/cam0")[0] == 404
        sources = _call("GET", base)[1]["sources"]
        assert sources["cam0"]["state"] == "removed" and sources["door"]["state"] == "running"
        n_cam0 = len((tmp_path / "cam0.jsonl").read_text().splitlines())  # finalised at removal
        assert n_cam0 == sources["cam0"]["frames_out"]
    finally:
        graph.stop()
        runner.join(30)
        control.close()
    report = graph.test_report
    assert report.error is None and set(report.metrics["sources"]) == {"cam0", "cam1", "door"}
    assert len((tmp_path / "door.jsonl").read_text().splitlines()) == report.metrics["sources"]["door"]["frames_out"]


def test_control_interface_off_the_loopback_needs_a_token():
    config = config_for(
        RunOptions(source=(synth_uri(2),), pipeline="edges", overrides=("control.port=8799", "control.host=0.0.0.0"))
    )
    env = os.environ.pop("SEGSTREAM_CONTROL_TOKEN", None)
    try:
        with pytest.raises(ConfigError, match="token is required"):
            control_for(config, make_graph(config))
    finally:
        if env is not None:
            os.environ["SEGSTREAM_CONTROL_TOKEN"] = env
    off = config_for(RunOptions(source=(synth_uri(2),), pipeline="edges"))
    assert control_for(off, make_graph(off)) is None


def _wait_for(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except (KeyError, ConnectionError, urllib.error.URLError):
            pass
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_semantic_smoothing_state_is_kept_per_source():
    from segstream.pipelines.apps.dashcam import SemanticPostStage
    from segstream.pipelines.tasks.road import PreprocessInfo, SemanticPostprocessor, SemanticSettings
    from segstream.stream.frame import Frame

    settings = SemanticSettings(
        class_names=("road", "car"),
        palette_bgr=np.zeros((2, 3), np.uint8),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        smoothing="ema",
        ema_alpha=0.5,
        drivable=False,
    )
    stage = SemanticPostStage("semantic.post", "semantic", SemanticPostprocessor(settings))
    info = PreprocessInfo(frame_hw=(4, 4), model_hw=(4, 4), content_hw=None)
    road = np.zeros((1, 2, 4, 4), np.float32)
    road[:, 0] = 5.0
    car = np.zeros((1, 2, 4, 4), np.float32)
    car[:, 1] = 5.0

    def run(source_id, seq, logits):
        f = Frame(source_id=source_id, seq=seq, pts_s=seq / 10, capture_ns=0, image_bgr=np.zeros((4, 4, 3), np.uint8))
        f.results["_semantic.outputs"] = {"logits": logits}
        f.results["_semantic.info"] = info
        return stage.process(f).results["semantic"].class_ids

    assert (run("cam0", 0, road) == 0).all()
    # cam1's first frame is all car: with one shared EMA it would be pulled towards cam0's road.
    assert (run("cam1", 0, car) == 1).all()
    stage.source_ended("cam1")
    assert (run("cam1", 0, car) == 1).all()  # a re-used id starts fresh
    assert (run("cam0", 1, road) == 0).all()
    assert stage.metrics() == {"flicker_mean": 0.0}  # cam0's two maps agree; one-frame sources have none
