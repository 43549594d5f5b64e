"""GStreamer through PyGObject, loaded only when a gst: source or sink is used."""

from __future__ import annotations

from segstream.stream.errors import SegstreamError

_INSTALL = (
    "GStreamer's Python bindings are missing: install the Debian packages "
    "(gstreamer1.0-plugins-{base,good,bad,ugly} gstreamer1.0-libav gir1.2-gstreamer-1.0 "
    "gir1.2-gst-plugins-base-1.0 libgirepository1.0-dev libcairo2-dev) and "
    "pip install 'pygobject<3.51' (see README)"
)


def gst_available() -> bool:
    """True when PyGObject and GStreamer 1.x (with the app library) can be loaded."""
    try:
        load_gst()
    except SegstreamError:
        return False
    return True


def load_gst(error_cls: type[SegstreamError] = SegstreamError):
    """Returns the initialised ``Gst`` module, or raises ``error_cls`` saying what to install."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstApp", "1.0")
        from gi.repository import Gst, GstApp  # noqa: F401  (GstApp registers appsink/appsrc methods)
    except (ImportError, ValueError) as exc:
        raise error_cls(f"{_INSTALL} ({exc})") from None
    if not Gst.is_initialized():
        Gst.init(None)
    return Gst


def bus_error(pipeline) -> str | None:
    """The first error message waiting on a pipeline's bus, or None."""
    Gst = load_gst()
    bus = pipeline.get_bus()
    msg = bus.pop_filtered(Gst.MessageType.ERROR)
    if msg is None:
        return None
    err, debug = msg.parse_error()
    return f"{err.message}" + (f" ({debug.splitlines()[0]})" if debug else "")
