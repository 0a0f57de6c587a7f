"""NIfTI <-> Volume. NIfTI is RAS; Volume geometry is LPS (DICOM), array ``(Z, Y, X)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rafss_core.segmentation.volume import Volume

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def read_volume(path: Path, modality: str = "OT") -> Volume:
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path.name}: expected a 3D volume, got shape {data.shape}")
    array = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    return Volume.from_affine(array, RAS_TO_LPS @ img.affine, modality=modality)


def write_volume(volume: Volume, path: Path, dtype: type = np.uint16) -> Path:
    """Write ``volume.array`` with its geometry (e.g. a label map on the source grid)."""
    import nibabel as nib

    data = np.transpose(volume.array, (2, 1, 0)).astype(dtype)
    affine = RAS_TO_LPS @ volume.affine
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path
