"""A DICOM-SEG built with highdicom from an ACDC label map (independent of rafss_core.dicom)."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

ACDC_LABELS = {1: "right ventricle", 2: "myocardium", 3: "left ventricle"}


def make_seg(series_paths: list[Path], labels: np.ndarray, out_path: Path) -> Path:
    """A BINARY SEG with one segment per ACDC label, referencing every source slice."""
    sources = [pydicom.dcmread(p) for p in series_paths]
    sources.sort(key=lambda ds: int(ds.InstanceNumber))
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=name,
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Heart,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name="RAFSS test", version="0", family=codes.DCM.ArtificialIntelligence
            ),
        )
        for number, name in ACDC_LABELS.items()
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=labels.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=900,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="RAFSS tests",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
        series_description="AI pre-segmentation (test)",
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out_path)
    return out_path
