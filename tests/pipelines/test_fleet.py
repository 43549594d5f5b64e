"""`segstream fleet` (pipelines/apps/fleet.py) on a real local Ray cluster bound to 127.0.0.1:
results equal to single-process `segstream run`, skipping complete recordings, retries, a
failed recording that a rerun finishes, a worker killed mid-way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

# Before Ray is imported: every Ray port on 127.0.0.1 (else Ray binds this machine's address).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import cv2
import pytest

from segstream.pipelines.apps.config import load_config
from segstream.pipelines.apps.fleet import (
    SUMMARY_NAME,
    comparable_record,
    completed_frames,
    config_hash,
    expand_sources,
    output_suffixes,
    recording_stems,
    reproducibility_issues,
    run_fleet,
)
from segstream.stream.errors import ConfigError
from tests.conftest import ROOT, segstream_cmd

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[fleet]')")

# Deterministic dashcam settings: a fixed cadence (an automatic one follows measured CPU time)
# and no HUD (it prints the age of results in wall-clock ms into the video).
DASHCAM_TOML = """
[output]
uris = ["run.mp4", "run.jsonl"]
[pipeline]
name = "dashcam"
[instances]
artifact = "{root}/weights/yolact_tiny_synthetic.onnx"
[semantic]
artifact = "{root}/weights/deeplab_tiny_synthetic.onnx"
[schedule]
instances_every = 1
semantic_every = 2
[overlay]
hud = false
"""
EDGES_TOML = """
[output]
uris = ["run.avi", "run.jsonl"]
[pipeline]
name = "edges"
"""
START = {"start_timeout_s": 120.0, "recording_timeout_s": 180.0, "progress": False}


def write_clip(path, frames: int, seed: int, size_wh=(320, 240)) -> str:
    """A generated road scene (cars, people, lanes): the embedded models find objects in it."""
    from segstream.models.synthetic.scene import SceneConfig, SceneSequence

    seq = SceneSequence(seed, SceneConfig(width=size_wh[0], height=size_wh[1], fps=30))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size_wh)
    assert writer.isOpened()
    for _ in range(frames):
        writer.write(seq.next_sample().image_bgr)
    writer.release()
    return str(path)


def write_config(folder, text: str) -> str:
    path = os.path.join(str(folder), "fleet.toml")
    with open(path, "w") as fh:
        fh.write(text.format(root=ROOT))
    return path


def jsonl_lines(path) -> list[str]:
    """Each record without its wall-clock fields, serialised as the sink does."""
    with open(path) as fh:
        return [json.dumps(comparable_record(json.loads(line)), separators=(",", ":")) for line in fh]


def file_bytes(path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def run_fleet_in_thread(**kwargs):
    box = {}

    def target():
        try:
            box["report"] = run_fleet(**kwargs)
        except BaseException as exc:  # re-raised in the test thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def wait_for_lines(path, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as fh:
                if sum(1 for _ in fh) >= n:
                    return
        time.sleep(0.1)
    raise AssertionError(f"{path} did not reach {n} lines within {timeout_s} s")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drives")
    return [write_clip(folder / f"drive{i}.mp4", 12, seed=i) for i in range(3)]


@pytest.fixture(scope="module")
def fleet_and_single(clips, tmp_path_factory):
    """The three clips through a fleet on its own local cluster, and each through `segstream run`."""
    work = tmp_path_factory.mktemp("equality")
    config_path = write_config(work, DASHCAM_TOML)
    report = run_fleet(
        [os.path.join(os.path.dirname(clips[0]), "*.mp4")],
        str(work / "fleet"),
        load_config(config_path),
        workers=2,
        **START,
    )
    cluster_left_running = ray.is_initialized()
    for clip in clips:
        stem = os.path.splitext(os.path.basename(clip))[0]
        out = subprocess.run(
            segstream_cmd(
                "run",
                "--config",
                config_path,
                "--source",
                clip,
                "--quiet",
                "--output",
                str(work / "single" / f"{stem}.mp4"),
                "--output",
                str(work / "single" / f"{stem}.jsonl"),
            ),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
    return work, config_path, report, cluster_left_running


def test_fleet_results_equal_single_process_runs(fleet_and_single, clips):
    work, _, report, cluster_left_running = fleet_and_single
    assert not cluster_left_running, "the fleet started a local cluster and must shut it down"
    assert [r.status for r in report.recordings] == ["done"] * 3
    assert [r.niceness for r in report.recordings] == [0] * 3  # not Ray's default 15
    assert report.exit_code == 0 and report.workers == 2 and report.reproducibility == []
    detections = 0
    for clip, rec in zip(clips, report.recordings):
        stem = rec.stem
        fleet_lines = jsonl_lines(work / "fleet" / f"{stem}.jsonl")
        single_lines = jsonl_lines(work / "single" / f"{stem}.jsonl")
        assert len(fleet_lines) == rec.frames == 12
        assert fleet_lines == single_lines
        assert json.loads(fleet_lines[0])["source"] == clip
        detections += sum(len(json.loads(line)["results"].get("instances", [])) for line in fleet_lines)
        assert file_bytes(work / "fleet" / f"{stem}.mp4") == file_bytes(work / "single" / f"{stem}.mp4")
        assert not os.path.exists(work / "fleet" / f"{stem}.partial.mp4")
    assert detections > 0, "the clips should exercise instances and tracking, not only empty frames"
    with open(work / "fleet" / SUMMARY_NAME) as fh:
        summary = json.load(fh)
    assert summary["done"] == 3 and summary["failed"] == 0 and summary["frames"] == 36


def test_rerun_skips_complete_recordings_without_starting_ray(fleet_and_single, clips):
    work, config_path, _, _ = fleet_and_single
    mtimes = {f: os.stat(work / "fleet" / f).st_mtime_ns for f in os.listdir(work / "fleet") if f != SUMMARY_NAME}
    report = run_fleet(clips, str(work / "fleet"), load_config(config_path), **START)
    assert [r.status for r in report.recordings] == ["skipped"] * 3
    assert [r.frames for r in report.recordings] == [12, 12, 12]
    assert report.workers == 0 and not ray.is_initialized()
    assert {f: os.stat(work / "fleet" / f).st_mtime_ns for f in mtimes} == mtimes


def test_changed_config_recording_or_missing_output_is_redone(fleet_and_single, clips):
    work, config_path, _, _ = fleet_and_single
    config = load_config(config_path)
    out, stem, suffixes, chash = str(work / "fleet"), "drive0", output_suffixes(config), config_hash(config)
    assert completed_frames(out, clips[0], stem, suffixes, chash) == 12
    config.tracking.min_hits = 2
    assert config_hash(config) != chash
    assert completed_frames(out, clips[0], stem, suffixes, config_hash(config)) is None
    assert completed_frames(out, clips[0], stem, suffixes + [".avi"], chash) is None  # an output missing
    st = os.stat(clips[0])
    os.utime(clips[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        assert completed_frames(out, clips[0], stem, suffixes, chash) is None
    finally:
        os.utime(clips[0], ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the tests below (the fleet uses it and leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_failed_recording_is_retried_reported_and_finished_by_a_rerun(cluster, clips, tmp_path):
    config = load_config(write_config(tmp_path, EDGES_TOML))
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(os.urandom(4096))
    out = str(tmp_path / "out")
    report = run_fleet([clips[0], str(bad)], out, config, retries=1, workers=2, **START)
    by_stem = {r.stem: r for r in report.recordings}
    assert by_stem["drive0"].status == "done" and by_stem["drive0"].attempts == 1
    broken = by_stem["broken"]
    assert broken.status == "failed" and broken.attempts == 2
    assert "broken.mp4" in broken.error and "decode" in broken.error
    assert report.exit_code == 1
    assert not os.path.exists(os.path.join(out, "broken.done.json"))
    assert not os.path.exists(os.path.join(out, "broken.jsonl"))
    with open(os.path.join(out, SUMMARY_NAME)) as fh:
        summary = json.load(fh)
    assert (summary["done"], summary["failed"]) == (1, 1)
    assert [r["status"] for r in summary["recordings"]] == ["done", "failed"]

    write_clip(bad, 5, seed=9)  # the recording is repaired: a rerun does only that one
    report = run_fleet([clips[0], str(bad)], out, config, retries=1, **START)
    assert [(r.stem, r.status) for r in report.recordings] == [("drive0", "skipped"), ("broken", "done")]
    assert report.exit_code == 0 and report.workers == 1
    assert len(jsonl_lines(os.path.join(out, "broken.jsonl"))) == 5


def _kill_the_worker_when(path: str, lines: int) -> None:
    """Kills the fleet's only worker once ``path`` (its recording's partial JSONL) has ``lines`` lines."""
    wait_for_lines(path, lines, timeout_s=120)
    names = [
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("segstream-fleet-")
    ]
    assert len(names) == 1, names
    ray.kill(ray.get_actor(names[0]))


def test_a_killed_worker_is_replaced_and_its_recording_retried(cluster, clips, tmp_path):
    config = load_config(write_config(tmp_path, DASHCAM_TOML))
    long_clip = write_clip(tmp_path / "a_long.mp4", 40, seed=5)
    out = str(tmp_path / "out")
    thread, box = run_fleet_in_thread(
        sources=[long_clip, clips[1]], output_dir=out, config=config, workers=1, retries=1, **START
    )
    _kill_the_worker_when(os.path.join(out, "a_long.partial.jsonl"), 2)
    thread.join(300)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    first, second = box["report"].recordings
    assert (first.status, first.attempts, first.frames) == ("done", 2, 40)
    assert "worker died" in first.error  # the earlier attempt's error is kept
    assert (second.status, second.attempts) == ("done", 1)
    assert first.niceness == second.niceness == 0  # on a cluster the fleet did not start too


def test_rerun_after_a_killed_worker_finishes_only_what_was_missing(cluster, clips, tmp_path):
    config = load_config(write_config(tmp_path, DASHCAM_TOML))
    long_clip = write_clip(tmp_path / "a_long.mp4", 40, seed=5)
    out = str(tmp_path / "out")
    sources = [long_clip, clips[2]]
    thread, box = run_fleet_in_thread(sources=sources, output_dir=out, config=config, workers=1, retries=0, **START)
    _kill_the_worker_when(os.path.join(out, "a_long.partial.jsonl"), 2)
    thread.join(300)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    assert [r.status for r in box["report"].recordings] == ["failed", "done"]
    assert os.path.exists(os.path.join(out, "a_long.partial.jsonl"))  # what the killed worker left
    assert not os.path.exists(os.path.join(out, "a_long.jsonl"))
    done_mtime = os.stat(os.path.join(out, "drive2.mp4")).st_mtime_ns

    report = run_fleet(sources, out, config, **START)
    assert [r.status for r in report.recordings] == ["done", "skipped"]
    assert report.recordings[0].frames == 40 and report.exit_code == 0
    assert os.stat(os.path.join(out, "drive2.mp4")).st_mtime_ns == done_mtime
    assert len(jsonl_lines(os.path.join(out, "a_long.jsonl"))) == 40


# ------------------------------------------------------------------- planning, without a cluster


def test_outputs_that_cannot_be_written_per_recording_are_config_errors():
    config = load_config(None, ["output.uris=['ws://127.0.0.1:8765']"])
    with pytest.raises(ConfigError, match="per recording"):
        output_suffixes(config)
    config = load_config(None, ["output.uris=['a.jsonl', 'b.jsonl']"])
    with pytest.raises(ConfigError, match="same kind|kind '.jsonl'"):
        output_suffixes(config)
    config = load_config(None, ["output.uris=['a.mp4', 'b.jsonl', 'null://']"])
    assert output_suffixes(config) == [".mp4", ".jsonl"]


def test_sources_globs_and_stems(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name in ("a/x.mp4", "a/y.mp4", "b/x.mp4"):
        (tmp_path / name).write_bytes(b"")
    found = expand_sources([str(tmp_path / "a" / "*.mp4"), str(tmp_path / "a" / "x.mp4")])
    assert found == [str(tmp_path / "a" / "x.mp4"), str(tmp_path / "a" / "y.mp4")]
    assert expand_sources([str(tmp_path / "b")]) == [str(tmp_path / "b" / "x.mp4")]
    with pytest.raises(ConfigError, match="no file matches"):
        expand_sources([str(tmp_path / "*.avi")])
    with pytest.raises(ConfigError, match="no such file"):
        expand_sources([str(tmp_path / "missing.mp4")])
    with pytest.raises(ConfigError, match="no recordings"):
        run_fleet([], str(tmp_path / "out"), load_config(None), progress=False)
    with pytest.raises(ConfigError, match="same outputs"):
        recording_stems(expand_sources([str(tmp_path / "a"), str(tmp_path / "b")]))


def test_reproducibility_issues_name_what_depends_on_the_clock(tmp_path):
    assert reproducibility_issues(load_config(write_config(tmp_path, DASHCAM_TOML))) == []
    issues = reproducibility_issues(load_config(None, ["pipeline.name='dashcam'", "output.uris=['o.mp4']"]))
    assert len(issues) == 2 and "schedule.instances_every" in issues[0] and "overlay.hud" in issues[1]


def test_importing_the_fleet_module_does_not_import_ray():
    code = "import sys, segstream.pipelines.apps.fleet; raise SystemExit('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr or "ray was imported"


def test_the_cli_reruns_a_finished_fleet_as_all_skipped(fleet_and_single, clips):
    work, config_path, _, _ = fleet_and_single
    glob = os.path.join(os.path.dirname(clips[0]), "*.mp4")
    out = subprocess.run(
        segstream_cmd(
            "fleet", "--config", config_path, "--source", glob, "--output", str(work / "fleet"), "--no-progress"
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "fleet: 0 done, 3 skipped, 0 failed, 0 frames" in out.stdout  # frames processed by this run
