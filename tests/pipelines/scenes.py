"""Generated medical slice stacks and satellite maps with known areas, for the medical and
satellite tests (areas checked against the pixels drawn, not against the code under test)."""

from __future__ import annotations

import os

import cv2
import numpy as np

DISC_RADII = (0, 6, 11, 15, 11, 6)  # pixels, one disc per slice (0: none)


def disc_slices(
    folder, radii=DISC_RADII, size_hw=(64, 80), background=1000, disc=3000, dtype=np.uint16, names="slice_{i}.png"
) -> list[int]:
    """Writes one slice per radius (a disc of value ``disc`` on ``background``) and returns the
    disc's pixel count per slice. Names are numbered 1..N so natural and plain sorting differ."""
    os.makedirs(folder, exist_ok=True)
    counts = []
    for i, r in enumerate(radii):
        img = np.full(size_hw, background, dtype)
        if r:
            cv2.circle(img, (size_hw[1] // 2, size_hw[0] // 2), r, int(disc), -1)
        counts.append(int(np.count_nonzero(img == disc)))
        cv2.imwrite(os.path.join(str(folder), names.format(i=i + 1)), img)
    return counts


def write_dicom_series(
    folder, radii=DISC_RADII, size_hw=(64, 80), spacing=(0.8, 0.6), thickness=2.0, gap=2.5, intercept=-1024.0
) -> list[int]:
    """A CT-like DICOM series (needs pydicom): stored values 1024 + HU (background 0 HU, disc
    300 HU), RescaleIntercept -1024, a window 150/300, slices gap mm apart along z. Files are
    named in reverse order of position so sorting by name would be wrong. Returns disc pixel
    counts in position order."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    os.makedirs(folder, exist_ok=True)
    series_uid = generate_uid()
    counts = []
    n = len(radii)
    for i, r in enumerate(radii):
        hu = np.zeros(size_hw, np.int32)
        if r:
            cv2.circle(hu, (size_hw[1] // 2, size_hw[0] // 2), r, 300, -1)
        counts.append(int(np.count_nonzero(hu == 300)))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = os.path.join(str(folder), f"IM{n - i:03d}.dcm")
        ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = (
            CTImageStorage,
            meta.MediaStorageSOPInstanceUID,
            series_uid,
        )
        ds.Modality = "CT"
        ds.InstanceNumber = n - i  # deliberately disagrees with the position: position wins
        ds.ImagePositionPatient = [0.0, 0.0, -50.0 + i * gap]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = list(spacing)
        ds.SliceThickness = thickness
        ds.RescaleSlope, ds.RescaleIntercept = 1, intercept
        ds.WindowCenter, ds.WindowWidth = 150, 300
        ds.Rows, ds.Columns = size_hw
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = (hu - int(intercept)).astype(np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)
    assert pydicom  # imported for its side: fail here, not in the source, if missing
    return counts


def rectangles_map(path, size_hw=(300, 460)) -> dict[int, int]:
    """A map with two kinds of rectangles (8-bit gray levels 120 and 240 on 20) and returns
    the pixel count per class: 0 background, 1 (level 120), 2 (level 240)."""
    img = np.full(size_hw, 20, np.uint8)
    img[30:130, 40:240] = 120  # 100 x 200, crosses tile seams
    img[150:290, 300:450] = 240  # 140 x 150
    img[200:260, 20:80] = 240  # 60 x 60
    img[10:25, 400:455] = 120  # 15 x 55
    cv2.imwrite(str(path), img)
    return {c: int(np.count_nonzero(img == v)) for c, v in ((0, 20), (1, 120), (2, 240))}
