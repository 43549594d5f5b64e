"""What every sink is: ``open()``, ``write(frame)`` for each frame in order, ``close()`` once."""

from __future__ import annotations

from segstream.stream.frame import Frame


class Sink:
    """Base of every sink. ``close`` must finalise the output (playable files) and be idempotent.

    Attributes:
        name: printable identity.
    """

    name = "sink"

    def open(self) -> None:
        """Checks the destination early (writable folder, display present) before frames flow."""

    def write(self, frame: Frame) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finalises the output. Called once after the last frame, also after errors."""


class NullSink(Sink):
    """Discards frames (benchmarks)."""

    name = "null://"

    def write(self, frame: Frame) -> None:
        pass


class CallbackSink(Sink):
    """Calls ``fn(frame)`` for each frame, from the sink thread."""

    def __init__(self, fn, name: str = "callback") -> None:
        self.fn = fn
        self.name = name

    def write(self, frame: Frame) -> None:
        self.fn(frame)
