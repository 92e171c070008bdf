"""Bench a DICOM series: the bundled sample CT written as a 12-file series.

Usage: python benchmarks/dicom_series.py OUT_FOLDER
Writes OUT_FOLDER/series/IM0001.dcm ... from resources/sample_ct.nii.gz (real CT
values), using pydicom's bundled CT_small.dcm as the header template, then runs
`lvpnet bench` on it (folder bytes, JPEG-LS / JPEG 2000 re-encoded, .lvp).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from lvpnet.resources import SAMPLE_CT, path
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

import lvpnet


def write_series(folder: Path) -> None:
    vol = lvpnet.read(path(SAMPLE_CT))
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    dz, dy, dx = vol.spacing
    for i, frame in enumerate(vol.array):
        ds = dcmread(get_testdata_file("CT_small.dcm"))
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.Rows, ds.Columns = frame.shape
        ds.PixelSpacing = [dy, dx]
        ds.SliceThickness = dz
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, float(i * dz)]
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1  # the NIfTI holds HU directly
        ds.PixelRepresentation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 16, 15
        ds.PixelData = np.ascontiguousarray(frame, "<i2").tobytes()
        ds.save_as(folder / f"IM{i + 1:04d}.dcm", enforce_file_format=True)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "dicom_bench")
    write_series(out / "series")
    exe = Path(sys.executable).parent / "lvpnet"
    sys.exit(subprocess.call([str(exe), "bench", str(out / "series")]))
