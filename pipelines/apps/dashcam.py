"""The dashcam pipeline: instances (YOLACT, or Mask R-CNN with ``instances.model``) and DeepLab
road semantics as parallel branches, joined by frame, then tracking, carrying of results to the
frames a model skipped, the AR overlay and the sinks.

    source -> schedule -> [instances: pre -> infer -> post] -+-> join -> track -> carry -> overlay -> sinks
                       -> [semantic:  pre -> infer -> post] -+

With ``[schedule] enabled`` each model runs on a cadence the CPU can hold (``pipelines/tasks/schedule.py``);
off, both run on every frame and ``carry`` only marks every result fresh.

``--pipeline instances`` and ``--pipeline road`` run one branch. Models are exported artifacts
(ONNX or TensorRT) that describe themselves; nothing here imports torch.
"""

from __future__ import annotations

import os

from segstream.pipelines.apps.config import AppConfig
from segstream.pipelines.tasks.families import family_of_model
from segstream.pipelines.tasks.inference import PostprocessStage, model_branch
from segstream.pipelines.tasks.overlay import OverlayStage, OverlayStyle
from segstream.pipelines.tasks.schedule import CarryStage, ModelScheduler, ScheduledStage, ScheduleStage
from segstream.pipelines.tasks.tracking import TrackStage
from segstream.stream.backends import open_backend
from segstream.stream.backends.factory import is_remote
from segstream.stream.errors import ConfigError
from segstream.stream.graph import Parallel, Stage


def artifact_backend(path: str, what: str, config: AppConfig):
    """Opens the exported model a config section names, or says what to do if it cannot."""
    if not path:
        raise ConfigError(f"{what}.artifact is empty; point it to an exported model (.onnx or .engine)")
    if not is_remote(path) and not os.path.isfile(path):
        raise ConfigError(
            f"{what}.artifact: {path} does not exist; export one with 'segstream export' "
            "(or run 'make demo' once to build the embedded models)"
        )
    return open_backend(path, **config.backend.options())


def instance_stages(config: AppConfig) -> list[Stage]:
    c = config.instances
    backend = artifact_backend(c.artifact, "instances", config)
    meta = backend.metadata
    # Artifacts of another task are left to the runner, which says what it expected.
    if (
        meta is not None
        and meta.task == "instances"
        and meta.model != c.model
        and not meta.model.startswith(c.model + "_")
    ):
        backend.close()
        held = family_of_model(meta.model, "instances")
        raise ConfigError(
            f"instances.model is {c.model!r} but {c.artifact} holds {meta.model!r}; set instances.model = "
            f'"{held.name if held else meta.model}" or point instances.artifact to a {c.model} export'
        )
    # AppConfig has checked that the name belongs to an instance family.
    runner_class = family_of_model(c.model, "instances").runner_class()
    runner = runner_class(backend, score_threshold=c.score_threshold, max_detections=c.top_k)
    post = runner.postprocess

    def postprocess(outputs, info):
        inst = post(outputs, info)
        inst.mask_format = c.mask_format
        return inst

    return model_branch(
        "instances",
        runner.backend,
        runner.preprocess,
        postprocess,
        infer_workers=c.workers,
        batching=config.batching.settings(),
    )


class SemanticPostStage(PostprocessStage):
    """The semantic post-processing stage, one post-processor per source (smoothing and the
    flicker measure follow one camera's frames); reports the flicker of the maps it produced."""

    def __init__(self, name: str, key: str, postprocess, workers: int = 1) -> None:
        super().__init__(name, key, postprocess, workers)
        self._per_source: dict[str, object] = {}
        self._ended: list[float] = []  # flicker means of sources that have ended
        self._own_used = False

    def _for(self, source_id: str):
        post = self._per_source.get(source_id)
        if post is None:
            # The first source uses the runner's own post-processor (one source: as before).
            post = type(self.postprocess)(self.postprocess.settings) if self._own_used else self.postprocess
            self._own_used = True
            self._per_source[source_id] = post
        return post

    def process(self, frame):
        outputs = frame.results.pop(f"_{self.key}.outputs")
        info = frame.results.pop(f"_{self.key}.info")
        frame.results[self.key] = self._for(frame.source_id)(outputs, info)
        return frame

    def source_ended(self, source_id: str) -> None:
        post = self._per_source.pop(source_id, None)
        if post is not None and post.flicker.mean is not None:
            self._ended.append(post.flicker.mean)

    def metrics(self) -> dict:
        means = self._ended + [p.flicker.mean for p in self._per_source.values() if p.flicker.mean is not None]
        return {} if not means else {"flicker_mean": round(sum(means) / len(means), 5)}


def semantic_stages(config: AppConfig) -> list[Stage]:
    from segstream.pipelines.tasks.road import SemanticRunner

    c = config.semantic
    runner = SemanticRunner(
        artifact_backend(c.artifact, "semantic", config),
        input_size_hw=tuple(c.input_size) or None,
        smoothing=c.smoothing,
        ema_alpha=c.ema_alpha,
        drivable=c.drivable,
    )
    pre, infer, _ = model_branch(
        "semantic",
        runner.backend,
        runner.preprocess,
        runner.postprocess,
        infer_workers=c.workers,
        batching=config.batching.settings(),
    )
    # Smoothing keeps state across frames: one post-processing worker, frames in order.
    return [pre, infer, SemanticPostStage("semantic.post", "semantic", runner.postprocess)]


def _scheduler(config: AppConfig, keys: list[str]) -> ModelScheduler | None:
    c = config.schedule
    if not c.enabled:
        return None
    fixed = {"instances": c.instances_every, "semantic": c.semantic_every}
    return ModelScheduler(
        keys,
        fixed={k: v for k, v in fixed.items() if k in keys},
        target_fps=c.target_fps,
        cores=c.cores,
        cpu_share=c.cpu_share,
        max_every=c.max_every,
    )


def _scheduled(branches: dict[str, list[Stage]], config: AppConfig) -> tuple[list[Stage], dict[str, list[Stage]]]:
    """The schedule stage (or none) and the branches' stages wrapped to run on their frames only."""
    scheduler = _scheduler(config, list(branches))
    if scheduler is None:
        return [], branches
    wrapped = {k: [ScheduledStage(st, k, scheduler) for st in stages] for k, stages in branches.items()}
    return [ScheduleStage(scheduler)], wrapped


def _finish(config: AppConfig, with_instances: bool, keys: tuple[str, ...]) -> list[Stage]:
    stages: list[Stage] = []
    if with_instances and config.tracking.enabled:
        t = config.tracking
        stages.append(
            TrackStage(
                "instances",
                iou_threshold=t.iou_threshold,
                max_age=t.max_age,
                min_hits=t.min_hits,
                coast_s=t.coast_s,
                report_tentative=t.report_tentative,
            )
        )
    stages.append(CarryStage(keys, flow_width=config.schedule.flow_width))
    o = config.overlay
    if o.enabled:
        stages.append(
            OverlayStage(
                OverlayStyle(
                    o.mask_alpha, o.drivable_alpha, o.semantic_alpha, contours=o.contours, labels=o.labels, hud=o.hud
                )
            )
        )
    return stages


def build_dashcam(config: AppConfig) -> list:
    head, branches = _scheduled({"instances": instance_stages(config), "semantic": semantic_stages(config)}, config)
    return [*head, Parallel(branches, name="join"), *_finish(config, True, ("instances", "semantic"))]


def build_instances(config: AppConfig) -> list:
    head, branches = _scheduled({"instances": instance_stages(config)}, config)
    return [*head, *branches["instances"], *_finish(config, True, ("instances",))]


def build_road(config: AppConfig) -> list:
    head, branches = _scheduled({"semantic": semantic_stages(config)}, config)
    return [*head, *branches["semantic"], *_finish(config, False, ("semantic",))]
