"""Slice stacks of a medical series: a folder of PNG/TIFF slices or of DICOM files, streamed in
slice order, each frame carrying its pixel spacing and slice thickness in ``Frame.metadata``.

``stack:///data/ct?spacing=0.7x0.7&thickness=2.5&window=40,400``

- Image slices are sorted naturally by the numbers in their names (``s2.png`` before
  ``s10.png``). 16-bit slices keep their values until a window maps them to 8-bit for the model.
- DICOM series (``.dcm`` files, or files with the ``DICM`` marker) are read with pydicom,
  imported only then. Slices are sorted by their position along the slice normal
  (ImagePositionPatient / ImageOrientationPatient), else by InstanceNumber. RescaleSlope and
  RescaleIntercept are applied (CT: Hounsfield units) before the window.
- Spacing: what the URI says wins, then the DICOM header; a pipeline may fill in what is still
  unknown from its configuration. The window: the URI's, then the DICOM header's, else the
  series' value range (a first pass over the slices); 8-bit slices go as they are. A window
  given for 8-bit image slices is refused: they hold display values already, and a window meant
  for raw values (``40,400`` for Hounsfield units) would change what the model sees.

Every slice must have the size of the first; a slice that differs or cannot be read stops the
stream with a SourceError after the slices before it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from segstream.stream.errors import ConfigError, SourceError
from segstream.stream.sources.base import ImageConverter, Source, SourceItem
from segstream.stream.sources.file import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

#: URI options of ``stack://`` and how they parse.
STACK_OPTIONS = {"spacing": str, "thickness": float, "window": str}


@dataclass(frozen=True)
class Window:
    """An intensity window (centre, width) mapping raw slice values to 0-255 for the model."""

    center: float
    width: float

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ConfigError(f"window width must be > 0, got {self.width:g}")

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Raw values (any dtype) -> uint8: ``center - width/2`` maps to 0, ``center + width/2`` to 255."""
        lo = self.center - self.width / 2.0
        out = (values.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / self.width)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    @classmethod
    def parse(cls, text: str) -> Window:
        """ "CENTER,WIDTH" (e.g. "40,400")."""
        try:
            center, width = (float(v) for v in text.split(","))
        except ValueError:
            raise ConfigError(f"window must look like CENTER,WIDTH (e.g. 40,400), got {text!r}") from None
        return cls(center, width)


def parse_spacing(text: str) -> tuple[float, float]:
    """ "ROWxCOL" or one number, in mm -> (row spacing, column spacing); both > 0."""
    try:
        values = [float(v) for v in str(text).lower().split("x")]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise ConfigError(f"spacing must look like 0.7x0.7 (row x column, mm, > 0) or 0.7, got {text!r}")
    return values[0], values[1]


def natural_key(name: str) -> list:
    """Sort key that orders the numbers in a name by value: slice2 < slice10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_dicom_file(path: str) -> bool:
    """A ``.dcm`` file, or one with the DICOM preamble marker ``DICM`` at byte 128."""
    if path.lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


@dataclass
class _Slice:
    path: str
    position_mm: float | None = None


@dataclass(frozen=True)
class SeriesInfo:
    """What a series is, known before any slice goes to a model (``SliceStackSource.scan``).

    Attributes:
        folder: the series' folder.
        slice_count: number of slices.
        size_hw: (H, W) of the first slice.
        dtype: the first slice's stored type as numpy names it ("uint8", "uint16", ...).
        dicom: a DICOM series.
        spacing_mm: (row, column) from the URI or the header; None where unknown.
        thickness_mm: slice thickness from the URI or the header; None where unknown.
        slice_spacing_mm: distance between slice centres (DICOM positions); None where unknown.
        window: the window given (URI or header); None: none given.
    """

    folder: str
    slice_count: int
    size_hw: tuple[int, int]
    dtype: str
    dicom: bool
    spacing_mm: tuple[float, float] | None
    thickness_mm: float | None
    slice_spacing_mm: float | None
    window: Window | None


class SliceStackSource(Source):
    """The slices of one series, in order, as 8-bit BGR frames with slice metadata.

    Args:
        folder: the series' folder.
        spacing_mm: (row, column) pixel spacing in mm, overriding the DICOM header.
        thickness_mm: slice thickness in mm, overriding the DICOM header.
        window: intensity window for the 8-bit conversion.

    ``Frame.metadata`` of each slice: ``series``, ``slice_index``, ``slice_count``, ``file``,
    ``spacing_mm`` ([row, col] or None), ``slice_thickness_mm``, ``slice_spacing_mm`` (distance
    between slice centres, DICOM only; None where unknown), ``position_mm``, ``window``.
    """

    live = False

    def __init__(
        self,
        folder: str,
        spacing_mm: tuple[float, float] | None = None,
        thickness_mm: float | None = None,
        window: Window | None = None,
    ) -> None:
        if thickness_mm is not None and thickness_mm <= 0:
            raise ConfigError(f"{folder}: slice thickness must be > 0 mm, got {thickness_mm:g}")
        self.folder = folder
        self.name = f"stack://{folder}"
        self.spacing_mm = spacing_mm
        self.thickness_mm = thickness_mm
        self.window = window
        self.dicom = False
        self._slices: list[_Slice] = []
        self._index = 0
        self._size_hw: tuple[int, int] | None = None
        self._slice_spacing_mm: float | None = None
        self._rescale: list[tuple[float, float]] = []
        self._convert = ImageConverter(self.name)
        self._pydicom: Any = None  # the pydicom module, imported when a DICOM series opens
        self._info: SeriesInfo | None = None

    # -- opening ------------------------------------------------------------------------------
    def scan(self) -> SeriesInfo:
        """Lists the series, reads the DICOM headers and the first slice, and checks the window
        against the slices' type; no model sees anything yet. ``open`` calls it (once).

        Raises:
            SourceError: no folder, no slices, a mixed or unreadable series.
            ConfigError: a window given for 8-bit image slices.
        """
        if self._info is not None:
            return self._info
        self._list()
        first = self._raw(0)
        if self.window is not None and not self.dicom and first.dtype == np.uint8:
            lo, hi = (int(v) for v in self.window.apply(np.array([0, 255])))
            raise ConfigError(
                f"{self.folder}: window={self.window.center:g},{self.window.width:g} given for 8-bit slices "
                f"({os.path.basename(self._slices[0].path)}); a window maps raw values (16-bit slices, DICOM "
                f"Hounsfield units) to 0-255, and these slices hold display values 0-255 already (it would turn "
                f"0..255 into {lo}..{hi} and change what the model sees); drop window= for 8-bit slices, or give "
                "the 16-bit or DICOM series"
            )
        self._info = SeriesInfo(
            folder=self.folder,
            slice_count=len(self._slices),
            size_hw=(int(first.shape[0]), int(first.shape[1])),
            dtype=str(first.dtype),
            dicom=self.dicom,
            spacing_mm=None if self.spacing_mm is None else (float(self.spacing_mm[0]), float(self.spacing_mm[1])),
            thickness_mm=self.thickness_mm,
            slice_spacing_mm=self._slice_spacing_mm,
            window=self.window,
        )
        return self._info

    def open(self) -> None:
        self.scan()
        if self.window is None:
            self.window = self._series_window()

    def _list(self) -> None:
        if not os.path.isdir(self.folder):
            raise SourceError(f"{self.folder}: not a folder; give the folder that holds the series' slices")
        names = sorted((n for n in os.listdir(self.folder) if n.upper() != "DICOMDIR"), key=natural_key)
        paths = [os.path.join(self.folder, n) for n in names if os.path.isfile(os.path.join(self.folder, n))]
        images = [p for p in paths if p.lower().endswith(IMAGE_SUFFIXES)]
        dicoms = [p for p in paths if not p.lower().endswith(IMAGE_SUFFIXES) and is_dicom_file(p)]
        if images and dicoms:
            raise SourceError(f"{self.folder}: holds both images and DICOM files; keep one series per folder")
        if not images and not dicoms:
            raise SourceError(f"{self.folder}: the folder has no slices (PNG/TIFF images or DICOM files)")
        if dicoms:
            self.dicom = True
            self._open_dicom(dicoms)
        else:
            self._slices = [_Slice(p) for p in images]
        self.frame_count = len(self._slices)

    def _open_dicom(self, paths: list[str]) -> None:
        try:
            import pydicom
        except ImportError:
            raise SourceError(f"{self.folder}: reading DICOM series needs pydicom: pip install pydicom") from None
        self._pydicom = pydicom
        headers = []
        for p in paths:
            try:
                headers.append((p, pydicom.dcmread(p, stop_before_pixels=True)))
            except Exception as exc:  # pydicom raises several types for damaged files
                raise SourceError(
                    f"{p}: not a readable DICOM file ({type(exc).__name__}: {exc}); remove it from the folder or fix it"
                ) from None
        first = headers[0][1]
        positions = self._positions(headers)
        if positions is not None:
            order = np.argsort(positions, kind="stable")
            gaps = np.diff(np.sort(positions))
            if len(gaps) and np.median(gaps) > 0:
                self._slice_spacing_mm = float(np.median(gaps))
        elif all("InstanceNumber" in h for _, h in headers):
            order = np.argsort([int(h.InstanceNumber) for _, h in headers], kind="stable")
        else:
            order = np.arange(len(headers))
        self._slices = [_Slice(headers[i][0], None if positions is None else float(positions[i])) for i in order]
        self._rescale = [
            (
                float(getattr(headers[i][1], "RescaleSlope", 1) or 1),
                float(getattr(headers[i][1], "RescaleIntercept", 0) or 0),
            )
            for i in order
        ]
        if self.spacing_mm is None and "PixelSpacing" in first:
            self.spacing_mm = (float(first.PixelSpacing[0]), float(first.PixelSpacing[1]))
        if self.thickness_mm is None and "SliceThickness" in first and first.SliceThickness:
            self.thickness_mm = float(first.SliceThickness)
        if self._slice_spacing_mm is None and "SpacingBetweenSlices" in first and first.SpacingBetweenSlices:
            self._slice_spacing_mm = abs(float(first.SpacingBetweenSlices))
        if self.window is None and "WindowCenter" in first and "WindowWidth" in first:
            center, width = (_first_value(first.WindowCenter), _first_value(first.WindowWidth))
            if width > 0:
                self.window = Window(center, width)

    @staticmethod
    def _positions(headers) -> np.ndarray | None:
        """Each slice's position along the slice normal (mm), or None if a header lacks it."""
        if not all("ImagePositionPatient" in h and "ImageOrientationPatient" in h for _, h in headers):
            return None
        cosines = np.asarray([float(v) for v in headers[0][1].ImageOrientationPatient])
        normal = np.cross(cosines[:3], cosines[3:])
        return np.asarray([float(np.dot([float(v) for v in h.ImagePositionPatient], normal)) for _, h in headers])

    def _series_window(self) -> Window | None:
        """The series' value range as a window, for slices deeper than 8 bits (a first pass)."""
        first = self._raw(0)
        if first.dtype == np.uint8 and not self.dicom:
            return None
        lo, hi = float(first.min()), float(first.max())
        for i in range(1, len(self._slices)):
            raw = self._raw(i)
            lo, hi = min(lo, float(raw.min())), max(hi, float(raw.max()))
        log.info(
            "%s: no window given; using the series' value range %g..%g (add window=CENTER,WIDTH to set one)",
            self.folder,
            lo,
            hi,
        )
        return Window((lo + hi) / 2.0, max(hi - lo, 1.0))

    # -- reading ------------------------------------------------------------------------------
    def _raw(self, i: int) -> np.ndarray:
        """Slice ``i`` as stored (after RescaleSlope/Intercept for DICOM), size-checked."""
        path = self._slices[i].path
        if self.dicom:
            try:
                ds = self._pydicom.dcmread(path)
                raw = ds.pixel_array
            except Exception as exc:  # decoding errors come in many types (missing codecs, damage)
                raise SourceError(
                    f"{path}: cannot decode the DICOM pixel data ({type(exc).__name__}: {exc}); "
                    "compressed series may need pylibjpeg or gdcm"
                ) from None
            if raw.ndim != 2:
                raise SourceError(
                    f"{path}: pixel data of shape {raw.shape}; only single-frame grayscale slices are supported"
                )
            slope, intercept = self._rescale[i]
            if (slope, intercept) != (1.0, 0.0):
                raw = raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        else:
            raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise SourceError(f"{path}: not an image OpenCV can read; remove it from the series or fix it")
        size = (int(raw.shape[0]), int(raw.shape[1]))
        if self._size_hw is None:
            self._size_hw = size
        elif size != self._size_hw:
            raise SourceError(
                f"{path}: slice is {size[0]}x{size[1]} but the series' slices are "
                f"{self._size_hw[0]}x{self._size_hw[1]}; keep one series of equal-sized slices per folder"
            )
        return raw

    def read(self, stop: threading.Event) -> SourceItem | None:
        if stop.is_set() or self._index >= len(self._slices):
            return None
        i = self._index
        self._index += 1
        raw = self._raw(i)
        image = self.window.apply(raw) if self.window is not None else raw
        where = f" ({os.path.basename(self._slices[i].path)})"
        return SourceItem(self._convert(image, where), None, self._metadata(i))

    def _metadata(self, i: int) -> dict:
        return {
            "series": self.folder,
            "slice_index": i,
            "slice_count": len(self._slices),
            "file": os.path.basename(self._slices[i].path),
            "spacing_mm": None if self.spacing_mm is None else [float(v) for v in self.spacing_mm],
            "slice_thickness_mm": self.thickness_mm,
            "slice_spacing_mm": self._slice_spacing_mm,
            "position_mm": self._slices[i].position_mm,
            "window": None if self.window is None else [self.window.center, self.window.width],
        }

    def stats(self) -> dict:
        return {"slices": len(self._slices), "slices_read": self._index, "dicom": self.dicom}


def _first_value(value) -> float:
    """DICOM multi-valued numbers (WindowCenter "40\\400") -> the first as float."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def stack_source_from_uri(uri: str, path: str, options: dict) -> SliceStackSource:
    """``stack://`` URI options -> a SliceStackSource (``path`` and ``options`` already split off)."""
    if not path:
        raise ConfigError(f"{uri}: expected stack:///path/to/series (a folder of slices)")
    spacing = parse_spacing(options["spacing"]) if "spacing" in options else None
    window = Window.parse(options["window"]) if "window" in options else None
    return SliceStackSource(path, spacing_mm=spacing, thickness_mm=options.get("thickness"), window=window)
