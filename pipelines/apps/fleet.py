"""``segstream fleet``: many recordings through one pipeline on a Ray cluster, one task per
recording.

Each worker is a Ray actor that runs recordings one after another, each through a graph built
by ``make_graph`` from the same config ``segstream run`` uses, and writes that recording's
outputs itself: ``<output>/<stem>.mp4``, ``<stem>.jsonl`` (the config's output kinds) are
written under ``<stem>.partial.<ext>`` and renamed when the run succeeded, then a completion
record ``<stem>.done.json`` (frames, status, config hash, the recording's size and mtime) is
written last. A rerun skips every recording whose record matches and whose outputs exist, and
redoes the rest (partial, failed, changed config, changed recording). A failed recording is
retried ``retries`` times, then reported failed without stopping the others; a worker that
dies (killed, out of memory) is replaced. ``<output>/fleet_summary.json`` lists every
recording's status, frames and seconds.

Results equal those of ``segstream run`` on each file alone: the same graph code runs with the
same config, and each recording gets a fresh pipeline (tracker, scheduler and smoothing state
start empty, as in a process of its own). What can differ run to run is what depends on the
clock: the JSONL fields in ``WALL_CLOCK_FIELDS``, an automatic schedule (cadences follow
measured CPU time) and the HUD line of the overlay (the age of results in wall-clock ms).
``reproducibility_issues`` names those for a config; with a fixed cadence (or
``schedule.enabled = false``) and ``overlay.hud = false`` the video files and the JSONL lines
without the wall-clock fields are the same bytes (``tests/pipelines/test_fleet.py``).

Ray is imported inside the functions that need it (the optional ``fleet`` extra); importing
this module does not need Ray.
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import hashlib
import json
import logging
import os
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from segstream.pipelines.apps.app import make_graph
from segstream.pipelines.apps.config import AppConfig
from segstream.stream.errors import ConfigError, SegstreamError
from segstream.stream.progress import ProgressReporter, bar
from segstream.stream.sinks.files import FOURCC_BY_SUFFIX
from segstream.stream.sources.file import VIDEO_SUFFIXES

log = logging.getLogger(__name__)

SUMMARY_NAME = "fleet_summary.json"
#: Fields of a JSONL record that hold wall-clock measurements (they differ between any two runs).
WALL_CLOCK_FIELDS = ("capture_ns", "age_ms", "timings_ms")
#: Set to "0" before Ray is imported, a local cluster binds 127.0.0.1 only (else the machine's address).
RAY_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: Ray starts its workers at nice 15: next to any other work (a training, a second fleet) they get a
#: few percent of a core (measured here: a 16-frame clip 2 s alone, 45 s in a nice-15 actor).
#: The fleet's workers are the job, so they run at the niceness of a ``segstream run``: a local
#: cluster the fleet starts gets ``LOCAL_SYSTEM_CONFIG`` (its prestarted workers serve the actors:
#: ready in ~0.6 s); on any other cluster each actor asks for ``WORKER_RUNTIME_ENV`` (a worker
#: process of its own: ~3.5 s).
LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0}
WORKER_RUNTIME_ENV = {"env_vars": {"RAY_worker_niceness": "0"}}
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_SCHEDULED_MODELS = {"dashcam": ("instances", "semantic"), "instances": ("instances",), "road": ("semantic",)}


@dataclass
class RecordingResult:
    """What happened to one recording.

    Attributes:
        source: the recording's path, as given (it is the ``source`` of its JSONL records).
        stem: its file name without suffix; its outputs are ``<output>/<stem>.<ext>``.
        status: "done" (processed now), "skipped" (complete from an earlier run) or "failed".
        frames: frames written (for "skipped": as recorded by the run that made them).
        seconds: wall time of the attempt that counted, graph build included.
        attempts: attempts made in this run (0 for "skipped").
        error: the last error, for "failed" (and earlier attempts' errors for a retried "done").
        worker: the worker (host:pid) of the last attempt.
        setup_s: seconds spent building the pipeline (model sessions) for the last attempt.
        niceness: the worker's nice value (0 unless the cluster runs its workers below normal priority).
        exit_code: of the last attempt's error (2: a configuration error, which stops the fleet).
    """

    source: str
    stem: str
    status: str
    frames: int = 0
    seconds: float = 0.0
    attempts: int = 0
    error: str | None = None
    worker: str | None = None
    setup_s: float = 0.0
    niceness: int | None = None
    exit_code: int = 0


@dataclass
class FleetReport:
    """The outcome of a fleet run (also written to ``<output>/fleet_summary.json``).

    Attributes:
        recordings: one result per recording, in the order given.
        output_dir: where the outputs went.
        config_hash: identifies the config and model files the outputs were made with.
        workers: workers started (0: everything was complete already).
        wall_s: seconds from the call to the summary, cluster start-up included.
        reproducibility: reasons the results may differ between runs (empty: none).
    """

    recordings: list[RecordingResult]
    output_dir: str
    config_hash: str
    workers: int
    wall_s: float
    reproducibility: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.recordings)

    @property
    def frames(self) -> int:
        """Frames processed in this run (skipped recordings not counted)."""
        return sum(r.frames for r in self.recordings if r.status == "done")

    @property
    def exit_code(self) -> int:
        """0 when every recording is complete, else 1 (as ``segstream run`` after a failure)."""
        return 1 if self.count("failed") else 0

    def to_json_dict(self) -> dict:
        return {
            "output_dir": self.output_dir,
            "config_hash": self.config_hash,
            "workers": self.workers,
            "wall_s": round(self.wall_s, 3),
            "recordings_total": len(self.recordings),
            "done": self.count("done"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "frames": self.frames,
            "fps": round(self.frames / self.wall_s, 3) if self.wall_s > 0 else None,
            "reproducible": not self.reproducibility,
            "reproducibility_issues": list(self.reproducibility),
            "recordings": [dataclasses.asdict(r) for r in self.recordings],
        }


# --------------------------------------------------------------------------- planning (no Ray)


def expand_sources(patterns: list[str]) -> list[str]:
    """Recordings from paths, globs and folders (a folder's video files), in order, without repeats.

    Raises:
        ConfigError: a pattern matches nothing, or a path does not exist.
    """
    out: list[str] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            found = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
            if not found:
                raise ConfigError(f"--source {pattern!r}: no file matches this pattern; check the path")
        elif os.path.isdir(pattern):
            found = sorted(os.path.join(pattern, f) for f in os.listdir(pattern) if f.lower().endswith(VIDEO_SUFFIXES))
            if not found:
                raise ConfigError(
                    f"--source {pattern}: the folder has no video files ({', '.join(VIDEO_SUFFIXES[:4])}, ...)"
                )
        elif os.path.isfile(pattern):
            found = [pattern]
        else:
            raise ConfigError(f"--source {pattern}: no such file or folder; check the path")
        out.extend(p for p in found if p not in out)
    return out


def output_suffixes(config: AppConfig) -> list[str]:
    """The file kinds each recording gets, from the config's outputs (``out/run.mp4`` -> ".mp4").

    Raises:
        ConfigError: an output that is not a video file, a JSONL file or ``null://`` (a fleet
            writes files named after each recording), or two outputs of the same kind.
    """
    suffixes: list[str] = []
    for uri in config.output.uris:
        uri = str(uri).strip()
        if uri in ("null://", "null"):
            continue
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        suffix = os.path.splitext(path)[1].lower()
        if "://" in path or (suffix not in FOURCC_BY_SUFFIX and suffix not in _JSONL_SUFFIXES):
            raise ConfigError(
                f"output {uri!r} cannot be written per recording; a fleet writes <output>/<stem>.<ext> "
                f"files: use video files ({', '.join(sorted(FOURCC_BY_SUFFIX))}), .jsonl or null://"
            )
        if suffix in suffixes:
            raise ConfigError(f"two outputs of kind {suffix!r} would both be <output>/<stem>{suffix}; keep one")
        suffixes.append(suffix)
    return suffixes


def recording_stems(recordings: list[str]) -> dict[str, str]:
    """Recording -> output stem. Raises ConfigError when two recordings share a stem."""
    stems: dict[str, str] = {}
    seen: dict[str, str] = {}
    for rec in recordings:
        stem = Path(rec).stem
        if stem in seen:
            raise ConfigError(
                f"{seen[stem]} and {rec} would write the same outputs ({stem}.*); "
                "rename one or run them as two fleets with different --output"
            )
        seen[stem] = rec
        stems[rec] = stem
    return stems


def _artifact_paths(config: AppConfig) -> list[str]:
    return [c.artifact for c in (config.instances, config.semantic, config.medical, config.satellite) if c.artifact]


def config_hash(config: AppConfig) -> str:
    """A short hash of what decides a recording's results: the config (less the source, the
    output paths and progress display) and the bytes of the model files it names."""
    doc = dataclasses.asdict(config)
    doc["source"].pop("uri")
    doc["source"].pop("uris")
    doc["output"]["uris"] = output_suffixes(config)
    doc["runtime"].pop("progress")
    h = hashlib.sha256(json.dumps(doc, sort_keys=True).encode())
    for path in _artifact_paths(config):
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def reproducibility_issues(config: AppConfig) -> list[str]:
    """Why two runs of this config on the same file may give different results (empty: none,
    beyond the ``WALL_CLOCK_FIELDS`` of JSONL records)."""
    issues = []
    models = _SCHEDULED_MODELS.get(config.pipeline.name, ())
    s = config.schedule
    automatic = [k for k in models if not getattr(s, f"{k}_every")]
    if s.enabled and automatic:
        issues.append(
            f"the schedule picks the cadence of {', '.join(automatic)} from measured CPU time; set "
            + " and ".join(f"schedule.{k}_every" for k in automatic)
            + " (or schedule.enabled = false)"
        )
    video = any(sfx in FOURCC_BY_SUFFIX for sfx in output_suffixes(config))
    if models and video and config.overlay.enabled and config.overlay.hud:
        issues.append(
            "the overlay's HUD prints the age of results in wall-clock ms into the video; set overlay.hud = false"
        )
    return issues


def comparable_record(record: dict) -> dict:
    """A JSONL record without its wall-clock fields: what two runs of a reproducible config agree on."""
    return {k: v for k, v in record.items() if k not in WALL_CLOCK_FIELDS}


def _recording_stat(path: str) -> dict:
    st = os.stat(path)
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def done_record_path(output_dir: str, stem: str) -> str:
    return os.path.join(output_dir, f"{stem}.done.json")


def _final_paths(output_dir: str, stem: str, suffixes: list[str]) -> list[str]:
    return [os.path.join(output_dir, stem + sfx) for sfx in suffixes]


def _partial_paths(output_dir: str, stem: str, suffixes: list[str]) -> list[str]:
    return [os.path.join(output_dir, f"{stem}.partial{sfx}") for sfx in suffixes]


def completed_frames(output_dir: str, recording: str, stem: str, suffixes: list[str], chash: str) -> int | None:
    """Frames of a complete earlier result for ``recording`` (None: it must be processed): a
    completion record made with the same config hash for the same recording (size and mtime),
    and every output present."""
    try:
        with open(done_record_path(output_dir, stem), encoding="utf-8") as fh:
            rec = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # a damaged record: the recording is redone
        log.warning(
            "%s: unreadable completion record (%s); redoing %s", done_record_path(output_dir, stem), exc, recording
        )
        return None
    if (
        rec.get("status") != "done"
        or rec.get("config_hash") != chash
        or rec.get("recording") != _recording_stat(recording)
        or not all(os.path.isfile(p) for p in _final_paths(output_dir, stem, suffixes))
    ):
        return None
    return int(rec.get("frames", 0))


def _write_json_atomic(path: str, doc: dict) -> None:
    """Writes ``doc`` so that ``path`` holds either the old or the whole new document."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise SegstreamError(f"{path}: cannot write ({exc.strerror})") from None


# --------------------------------------------------------------------------- the worker


class FleetWorker:
    """Runs recordings one after another (a Ray actor; also usable directly, without Ray).

    Each recording gets its own graph from ``make_graph``, so per-recording state starts empty
    as in a separate ``segstream run``; what the worker keeps across recordings is its process
    (interpreter, imports, ONNX Runtime and OpenCV initialised once). The model sessions are
    opened again per recording (``setup_s``: 0.1-0.6 s here) rather than kept: reused stages
    would carry state from one recording into the next (the scheduler's measured costs are not
    kept per source), and results would depend on which recordings a worker ran before.

    Args:
        config: the pipeline configuration (source and outputs are set per recording).
        output_dir: where outputs and completion records go (must exist).
        suffixes: output kinds (``output_suffixes(config)``).
        chash: ``config_hash(config)``, stored in the completion records.
    """

    def __init__(self, config: AppConfig, output_dir: str, suffixes: list[str], chash: str) -> None:
        self.config = config
        self.output_dir = output_dir
        self.suffixes = list(suffixes)
        self.chash = chash
        self.name = f"{os.uname().nodename}:{os.getpid()}"
        self._graph = None

    def ready(self) -> str:
        return self.name

    def frames(self) -> int:
        """Frames written so far for the recording in progress (read from another thread)."""
        graph = self._graph
        return graph.metrics.frames_out if graph is not None else 0

    def process(self, recording: str, stem: str, timeout_s: float | None = None) -> RecordingResult:
        """Runs one recording to its outputs; never raises for a failure of the recording."""
        t0 = time.perf_counter()
        finals = _final_paths(self.output_dir, stem, self.suffixes)
        partials = _partial_paths(self.output_dir, stem, self.suffixes)
        done_path = done_record_path(self.output_dir, stem)
        if os.path.exists(done_path):
            os.remove(done_path)  # from another config or recording: not valid for what comes now
        config = copy.deepcopy(self.config)
        config.source.uri = recording
        config.source.uris = []  # one recording per graph, whatever camera list the config names
        config.output.uris = partials or ["null://"]
        result = RecordingResult(recording, stem, "failed", attempts=1, worker=self.name, niceness=os.nice(0))
        graph = None
        try:
            graph = make_graph(config)
            result.setup_s = time.perf_counter() - t0
            self._graph = graph
            report = graph.run(timeout=timeout_s)
        except SegstreamError as exc:  # the pipeline could not be built or started for this recording
            if graph is not None:
                graph.close()  # a start that failed leaves the model sessions open
            result.error, result.exit_code = str(exc), exc.exit_code
            result.seconds = time.perf_counter() - t0
            return result
        finally:
            self._graph = None
        result.frames = int(report.metrics["frames_out"])
        if report.error is not None:
            result.error = f"{report.error} ({result.frames} frames written before it)"
            result.exit_code = report.error.exit_code
        else:
            for partial, final in zip(partials, finals):
                os.replace(partial, final)
            _write_json_atomic(
                done_path,
                {
                    "source": recording,
                    "status": "done",
                    "frames": result.frames,
                    "config_hash": self.chash,
                    "recording": _recording_stat(recording),
                    "outputs": [os.path.basename(p) for p in finals],
                    "seconds": round(time.perf_counter() - t0, 3),
                    "worker": self.name,
                },
            )
            result.status = "done"
        result.seconds = time.perf_counter() - t0
        return result


# --------------------------------------------------------------------------- progress


class FleetProgress(ProgressReporter):
    """The project's progress line over recordings and frames:
    ``[#####---] 1234/2400 frames, recordings 3/8 (1 skipped, 0 failed), 2 running, 41.3 fps``."""

    def __init__(self, recordings: int, total_frames: int | None, interval_s: float = 1.0, stream=None) -> None:
        super().__init__(graph=None, total=total_frames, interval_s=interval_s, stream=stream)
        self.recordings = recordings
        self.finished = self.skipped = self.failed = self.running = 0
        self.frames_finished = 0  # of finished recordings, this run
        self.frames_running = 0  # of recordings in progress
        self.frames_skipped = 0
        self._t0 = time.monotonic()

    def line(self) -> str:
        now = self.frames_finished + self.frames_running
        fps = now / max(1e-9, time.monotonic() - self._t0)
        shown = now + self.frames_skipped
        text = (
            f"recordings {self.finished}/{self.recordings} ({self.skipped} skipped, {self.failed} failed), "
            f"{self.running} running, {fps:.1f} fps"
        )
        if self.total:
            return f"{bar(shown / self.total)} {shown}/{self.total} frames, {text}"
        return f"{shown} frames, {text}"


def _frame_count(recording: str) -> int | None:
    import cv2

    cap = cv2.VideoCapture(recording, cv2.CAP_FFMPEG)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    return n if n > 0 else None


# --------------------------------------------------------------------------- the driver


def _import_ray(local: bool):
    """Ray, imported here (the optional ``fleet`` extra). For a local cluster, before the first
    import, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps every Ray port on 127.0.0.1."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault(RAY_LOCAL_ONLY_ENV, "0")
    elif local and os.environ.get(RAY_LOCAL_ONLY_ENV) != "0":
        log.warning(
            "Ray was imported before the fleet could set %s=0: a local cluster binds this machine's address",
            RAY_LOCAL_ONLY_ENV,
        )
    try:
        import ray
    except ImportError:
        raise ConfigError("segstream fleet needs Ray: pip install 'segstream[fleet]' (or pip install ray)") from None
    return ray


class _Pool:
    """The driver's side of the workers: start, replace, stop."""

    def __init__(
        self,
        ray,
        config,
        output_dir,
        suffixes,
        chash,
        *,
        cpus_per_worker: float,
        start_timeout_s: float,
        runtime_env: dict | None,
    ) -> None:
        self.ray = ray
        self.runtime_env = runtime_env
        self.args = (config, output_dir, suffixes, chash)
        self.remote_class = ray.remote(FleetWorker)
        self.cpus = cpus_per_worker
        self.start_timeout_s = start_timeout_s
        self.run_id = uuid.uuid4().hex[:8]
        self.started = 0
        self.actors: dict[int, object] = {}

    def start(self, slots: list[int]) -> None:
        ray = self.ray
        new = {}
        for slot in slots:
            self.started += 1
            new[slot] = self.remote_class.options(
                name=f"segstream-fleet-{self.run_id}-{self.started}",
                num_cpus=self.cpus,
                max_concurrency=2,
                scheduling_strategy="SPREAD",
                runtime_env=self.runtime_env,
            ).remote(*self.args)
        try:
            ray.get([a.ready.remote() for a in new.values()], timeout=self.start_timeout_s)
        except ray.exceptions.RayActorError as exc:  # e.g. segstream cannot be imported on a node
            for a in new.values():
                ray.kill(a)
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            raise SegstreamError(
                f"fleet: a worker could not start: {lines[-1] if lines else type(exc).__name__} "
                "(every node needs segstream and the same paths)"
            ) from None
        except ray.exceptions.GetTimeoutError:
            for a in new.values():
                ray.kill(a)
            cpus = ray.cluster_resources().get("CPU", 0)
            raise SegstreamError(
                f"fleet: {len(new)} workers did not start within {self.start_timeout_s:g} s (the cluster "
                f"has {cpus:g} CPUs, each worker asks for {self.cpus:g}); use fewer workers or "
                "a smaller cpus_per_worker, and check for leftover actors"
            ) from None
        self.actors.update(new)

    def stop(self) -> None:
        for a in self.actors.values():
            self.ray.kill(a)
        self.actors.clear()


def _worker_died(rec: str, stem: str, exc: Exception) -> RecordingResult:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RecordingResult(
        rec,
        stem,
        "failed",
        attempts=1,
        error=f"the worker died while processing it ({type(exc).__name__}: {first})",
        exit_code=1,
    )


def run_fleet(
    sources: list[str],
    output_dir: str,
    config: AppConfig,
    *,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 0.5,
    retries: int = 1,
    recording_timeout_s: float | None = None,
    start_timeout_s: float = 120.0,
    progress: bool = True,
) -> FleetReport:
    """Runs every recording through the pipeline ``config`` describes, on a Ray cluster.

    Args:
        sources: recordings: paths, globs (``drives/*.mp4``) or folders of videos. Paths are kept
            as given (they are the ``source`` of the JSONL records); on a remote cluster they must
            resolve on every node (shared storage).
        output_dir: ``<stem>.<ext>`` per output kind of ``config.output.uris``, ``<stem>.done.json``
            per complete recording, and ``fleet_summary.json``.
        config: the pipeline configuration (``config.source`` and the output paths are replaced).
        address: a Ray cluster to join (``ray://host:10001``, ``auto``); None starts a local one,
            bound to 127.0.0.1, and shuts it down at the end. If Ray is already initialised in
            this process, that cluster is used and left running.
        workers: worker actors (default: the cluster's CPUs, at most one per recording to do).
        cpus_per_worker: Ray CPUs each worker reserves; fractional so leftover actors cannot
            block the start (a worker's pipeline uses its threads regardless).
        retries: attempts after the first for a failed recording.
        recording_timeout_s: a recording running longer fails (and may be retried); None: no limit.
        start_timeout_s: workers that cannot start within this fail the fleet.
        progress: a progress line on stderr over recordings and frames.

    Returns:
        The report; also written to ``<output_dir>/fleet_summary.json``.

    Raises:
        ConfigError: before any output is written: no recordings, outputs that cannot be
            written per recording, two recordings with the same stem, Ray missing, or a
            configuration error reported by the first worker (every recording would fail).
        SegstreamError: the workers could not start.
    """
    t0 = time.perf_counter()
    if retries < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if cpus_per_worker <= 0:
        raise ConfigError(f"cpus_per_worker must be > 0, got {cpus_per_worker}")
    recordings = expand_sources(list(sources))
    if not recordings:
        raise ConfigError("no recordings given; pass --source with files, globs ('drives/*.mp4') or folders")
    stems = recording_stems(recordings)
    suffixes = output_suffixes(config)
    chash = config_hash(config)
    issues = reproducibility_issues(config)
    for issue in issues:
        log.warning("results may differ between runs: %s", issue)
    output_dir = os.path.abspath(output_dir)

    results: dict[str, RecordingResult] = {}
    todo: list[str] = []
    for rec in recordings:
        frames = completed_frames(output_dir, rec, stems[rec], suffixes, chash)
        if frames is None:
            todo.append(rec)
        else:
            results[rec] = RecordingResult(rec, stems[rec], "skipped", frames=frames)
    n_workers = 0
    if todo:
        n_workers = _process(
            todo,
            stems,
            output_dir,
            config,
            suffixes,
            chash,
            results,
            address=address,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            retries=retries,
            recording_timeout_s=recording_timeout_s,
            start_timeout_s=start_timeout_s,
            progress=progress,
        )
    report = FleetReport(
        [results[r] for r in recordings], output_dir, chash, n_workers, time.perf_counter() - t0, issues
    )
    _write_json_atomic(os.path.join(output_dir, SUMMARY_NAME), report.to_json_dict())
    return report


def _process(
    todo: list[str],
    stems: dict[str, str],
    output_dir: str,
    config: AppConfig,
    suffixes: list[str],
    chash: str,
    results: dict[str, RecordingResult],
    *,
    address,
    workers,
    cpus_per_worker,
    retries,
    recording_timeout_s,
    start_timeout_s,
    progress,
) -> int:
    """Runs ``todo`` on the workers, filling ``results``; returns the number of workers."""
    ray = _import_ray(local=address is None)
    os.makedirs(output_dir, exist_ok=True)
    own_cluster = not ray.is_initialized()
    if own_cluster and address is None:
        ray.init(include_dashboard=False, _system_config=LOCAL_SYSTEM_CONFIG)
    elif own_cluster:
        ray.init(address=address, include_dashboard=False)
    pool = None
    bar = None
    try:
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        n = min(n, len(todo))
        pool = _Pool(
            ray,
            config,
            output_dir,
            suffixes,
            chash,
            cpus_per_worker=cpus_per_worker,
            start_timeout_s=start_timeout_s,
            runtime_env=None if own_cluster and address is None else WORKER_RUNTIME_ENV,
        )
        pool.start(list(range(n)))
        if progress:
            counts = [_frame_count(r) for r in todo]
            skipped = [r for r in results.values() if r.status == "skipped"]
            total = None if None in counts else sum(counts) + sum(r.frames for r in skipped)
            bar = FleetProgress(len(todo) + len(skipped), total)
            bar.finished = bar.skipped = len(skipped)
            bar.frames_skipped = sum(r.frames for r in skipped)
            bar.start()
        _dispatch(ray, pool, todo, stems, results, retries=retries, timeout_s=recording_timeout_s, bar=bar)
        return n
    finally:
        if bar is not None:
            bar.stop()
        if pool is not None:
            pool.stop()
        if own_cluster:
            ray.shutdown()


def _dispatch(
    ray,
    pool: _Pool,
    todo: list[str],
    stems: dict[str, str],
    results: dict[str, RecordingResult],
    *,
    retries: int,
    timeout_s: float | None,
    bar: FleetProgress | None,
) -> None:
    """Hands each idle worker the next recording until all are done or out of attempts."""
    queue = deque((rec, 1) for rec in todo)
    idle = deque(pool.actors)
    busy: dict = {}  # ObjectRef -> (slot, recording, attempt)
    errors: dict[str, list[str]] = {}
    while queue or busy:
        while idle and queue:
            slot = idle.popleft()
            rec, attempt = queue.popleft()
            busy[pool.actors[slot].process.remote(rec, stems[rec], timeout_s)] = (slot, rec, attempt)
        ready, _ = ray.wait(list(busy), num_returns=1, timeout=1.0)
        for ref in ready:
            slot, rec, attempt = busy.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                result = _worker_died(rec, stems[rec], exc)
                pool.start([slot])
            except ray.exceptions.RayTaskError as exc:  # a bug in the worker's code: this recording failed
                result = RecordingResult(rec, stems[rec], "failed", attempts=1, error=str(exc).strip(), exit_code=1)
            idle.append(slot)
            result.attempts = attempt
            if result.status == "failed" and result.exit_code == 2:
                raise ConfigError(f"{rec}: {result.error}")
            if result.status == "failed" and attempt <= retries:
                errors.setdefault(rec, []).append(result.error or "failed")
                log.warning("%s failed (attempt %d of %d), retrying: %s", rec, attempt, retries + 1, result.error)
                queue.append((rec, attempt + 1))
                continue
            if result.status == "done" and rec in errors:
                result.error = "earlier attempts: " + " | ".join(errors[rec])
            results[rec] = result
            if bar is not None:
                bar.finished += 1
                bar.failed += result.status == "failed"
                bar.frames_finished += result.frames if result.status == "done" else 0
            if result.status == "failed":
                log.error("%s failed after %d attempts: %s", rec, attempt, result.error)
        if bar is not None:
            bar.running = len(busy)
            bar.frames_running = _frames_running(ray, pool, busy)


def _frames_running(ray, pool: _Pool, busy: dict) -> int:
    """Frames written so far by the recordings in progress (0 for a worker that does not answer)."""
    refs = [pool.actors[slot].frames.remote() for slot, _, _ in busy.values()]
    if not refs:
        return 0
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=1.0)
    total = 0
    for ref in ready:
        try:
            total += ray.get(ref)
        except ray.exceptions.RayError:  # a worker that just died: the dispatch loop handles it
            pass
    return total
