"""The exception hierarchy shared by every room.

Each error carries an exit code so the CLI can map failures to the documented codes:
2 for usage and configuration errors, 1 for runtime failures. Messages are one line and
say what was expected, what was found and what to do.
"""

from __future__ import annotations


class SegstreamError(Exception):
    """Base of every error segstream raises on purpose."""

    exit_code = 1


class ConfigError(SegstreamError):
    """A configuration file, option or argument is wrong."""

    exit_code = 2


class SourceError(SegstreamError):
    """A source cannot be opened or read."""


class SinkError(SegstreamError):
    """A sink cannot be opened or written."""


class ModelError(SegstreamError):
    """A checkpoint or artifact is wrong for the model asked for, or cannot be read."""


class BackendError(SegstreamError):
    """An inference runtime is missing or cannot run an artifact."""


class StageError(SegstreamError):
    """A stage raised while processing a frame.

    Attributes:
        stage: name of the stage that failed.
        seq: sequence number of the frame it was processing (None if not frame-bound).
        source_id: source of that frame.
    """

    def __init__(self, stage: str, seq: int | None, source_id: str | None, cause: BaseException):
        where = f"frame {seq}" if seq is not None else "start-up"
        src = f" of source '{source_id}'" if source_id else ""
        super().__init__(f"stage '{stage}' failed on {where}{src}: {type(cause).__name__}: {cause}")
        self.stage = stage
        self.seq = seq
        self.source_id = source_id
        self.cause = cause
        if isinstance(cause, SegstreamError):
            self.exit_code = cause.exit_code


class WatchdogError(SegstreamError):
    """A stage held one frame longer than the watchdog allows."""
