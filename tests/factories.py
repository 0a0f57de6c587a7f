"""Real DICOM test data built from ACDC volumes (read from ../shared/data, never copied)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset as PydicomDataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from rafss_core.segmentation.volume import Volume

REPO = Path(__file__).resolve().parents[1]
ACDC = REPO.parent / "shared" / "data" / "acdc"


def uid(*parts: object) -> str:
    """A deterministic UID for the given parts: a name-based UUID under the 2.25 root."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, '/'.join(map(str, parts))).int}"


def volume_to_mr_series(
    volume: Volume,
    out_dir: Path,
    *,
    patient_name: str = "TEST^ACDC",
    patient_id: str = "ACDC-TEST",
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_description: str = "cine SAX",
    seed: str = "acdc",
    scale: float = 4000.0,
) -> list[Path]:
    """Write a volume as an MR Image Storage series, one file per slice, with real geometry.

    Pixel values are ``round(array * scale)`` as uint16 (ACDC is scaled to [0, 1]).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or uid(seed, "study")
    series_uid = series_uid or uid(seed, "series", series_description)
    frame_of_ref = uid(seed, "frame-of-reference")
    row_dir, col_dir = volume.direction[:, 0], volume.direction[:, 1]
    sx, sy, sz = volume.spacing
    pixels = np.clip(np.round(volume.array * scale), 0, 65535).astype(np.uint16)
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    paths = []
    for z in range(volume.num_slices):
        sop_uid = uid(seed, series_uid, z)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = PydicomDataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_of_ref
        ds.PositionReferenceIndicator = ""
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.AccessionNumber = "A" + patient_id[-6:]
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.Modality = "MR"
        ds.Manufacturer = "RAFSS test factory"
        ds.BodyPartExamined = "HEART"
        ds.SeriesDescription = series_description
        ds.SeriesNumber = 1
        ds.InstanceNumber = z + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "SS"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.PatientPosition = "HFS"
        ds.RepetitionTime = 3.0
        ds.EchoTime = 1.5
        ds.EchoTrainLength = 1
        ds.ImagePositionPatient = [float(v) for v in volume.slice_position(z)[:3]]
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [float(sy), float(sx)]
        ds.SliceThickness = float(sz)
        ds.SpacingBetweenSlices = float(sz)
        ds.SliceLocation = float(np.dot(volume.slice_position(z)[:3], volume.slice_normal))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = pixels.shape[1:]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = pixels[z].tobytes()
        path = out_dir / f"{z:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def acdc_case(case_id: str = "patient001_frame01") -> tuple[Volume, np.ndarray]:
    """An ACDC image volume (MR) and its label map."""
    from rafss_core.datasets.nifti import read_volume

    volume = read_volume(ACDC / "imagesTr" / f"{case_id}_0000.nii.gz", modality="MR")
    labels = read_volume(ACDC / "labelsTr" / f"{case_id}.nii.gz").array.astype(np.uint8)
    return volume, labels
