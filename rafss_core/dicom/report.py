"""The volume report next to the SEG: a TID 1500 Measurement Report (Comprehensive 3D SR).

One *Volumetric ROI Measurements* group per segment of RAFSS's SEG, each referencing that SEG
segment and the source series, with:

- the segment's volume in mL (SCT 118565006 "Volume", UCUM ``ml``), counted on the label map
  that the SEG encodes (voxels x the series' voxel volume);
- the confidence summary as measurements in RAFSS's private coding scheme ``99RAFSS``: the mean
  and the minimum best-retrieval similarity over the series' slices, the number of slices
  flagged for a similarity below the task's threshold (those slices are left unsegmented), and
  the segment's mean object score (the decoder's presence logit; < 0: judged absent).

The report's UIDs derive from the job key, like the SEG's, so a re-run replaces it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import SegmentationStorage

from rafss_core.dicom.seg import SegmentSpec
from rafss_core.dicom.series import LoadedSeries

REPORT_SERIES_NUMBER = 9902
REPORT_SERIES_DESCRIPTION = "RAFSS AI volumes - not for diagnosis"
SCHEME = "99RAFSS"  # a private coding scheme (PS3.16 8.2: designators starting with 99)
MEAN_SIMILARITY = hd.sr.CodedConcept("MEANSIM", SCHEME, "Mean retrieval similarity")
MIN_SIMILARITY = hd.sr.CodedConcept("MINSIM", SCHEME, "Minimum retrieval similarity")
FLAGGED_SLICES = hd.sr.CodedConcept("FLAGGED", SCHEME, "Slices flagged low similarity")
OBJECT_SCORE = hd.sr.CodedConcept("OBJSCORE", SCHEME, "Mean object score")
VOLUME = hd.sr.CodedConcept("118565006", "SCT", "Volume")
ML = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
SLICES = hd.sr.CodedConcept("{slices}", "UCUM", "slices")


@dataclass(frozen=True)
class Confidence:
    """What the report says of the segmentation's reliability."""

    mean_similarity: float
    min_similarity: float
    flagged_slices: Sequence[int]  # z indices left unsegmented (similarity below threshold)
    # per label value: the decoder's mean object score over the slices (< 0: judged absent)
    object_scores: dict[int, float] = field(default_factory=dict)


def report_uids(job_key: str) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of the report for ``job_key``: stable 2.25 UIDs."""
    def uid(role: str) -> str:
        name = "\x00".join(("rafss-report", role, job_key))
        return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, name).int}"

    return uid("series"), uid("instance")


def segment_volumes_ml(labels: np.ndarray, spacing_zyx: Sequence[float],
                       segments: Sequence[SegmentSpec]) -> dict[int, float]:
    """Volume in mL of each segment's label value on the label map."""
    voxel_ml = float(np.prod([float(s) for s in spacing_zyx])) / 1000.0
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(),
                         minlength=max(s.label for s in segments) + 1)
    return {s.label: float(counts[s.label]) * voxel_ml for s in segments}


def write_volume_report(seg: Dataset, labels: np.ndarray, source: LoadedSeries,
                        segments: Sequence[SegmentSpec], confidence: Confidence, job_key: str,
                        algorithm_name: str = "RAFSS", algorithm_version: str = "0",
                        ) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 report for RAFSS's ``seg`` of ``source`` (segments in ``seg``'s order).

    Raises:
        ValueError: ``seg`` is not a Segmentation, or ``labels`` does not fit ``source``.
    """
    if str(seg.SOPClassUID) != SegmentationStorage:
        raise ValueError("the report references a DICOM-SEG; got another SOP class")
    if labels.shape != source.volume.shape:
        raise ValueError(f"label map {labels.shape} does not fit series {source.volume.shape}")
    ordered = sorted(segments, key=lambda s: s.label)
    volumes = segment_volumes_ml(labels, source.volume.spacing, ordered)
    algorithm = hd.sr.AlgorithmIdentification(name=algorithm_name, version=algorithm_version)
    groups = []
    for number, spec in enumerate(ordered, start=1):
        referenced = hd.sr.ReferencedSegment(
            sop_class_uid=SegmentationStorage, sop_instance_uid=str(seg.SOPInstanceUID),
            segment_number=number,
            source_series=hd.sr.SourceSeriesForSegmentation(source.series_instance_uid))
        measurements = [
            hd.sr.Measurement(name=VOLUME, value=round(volumes[spec.label], 3), unit=ML,
                              algorithm_id=algorithm),
            hd.sr.Measurement(name=MEAN_SIMILARITY, value=round(confidence.mean_similarity, 4),
                              unit=NO_UNITS, algorithm_id=algorithm),
            hd.sr.Measurement(name=MIN_SIMILARITY, value=round(confidence.min_similarity, 4),
                              unit=NO_UNITS, algorithm_id=algorithm),
            hd.sr.Measurement(name=FLAGGED_SLICES, value=len(confidence.flagged_slices),
                              unit=SLICES, algorithm_id=algorithm),
        ]
        if spec.label in confidence.object_scores:
            measurements.append(hd.sr.Measurement(
                name=OBJECT_SCORE, value=round(confidence.object_scores[spec.label], 4),
                unit=NO_UNITS, algorithm_id=algorithm))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=report_uids(f"{job_key}|segment|{number}")[1],
                identifier=f"{spec.name} (segment {number})"[:64]),
            referenced_segment=referenced,
            finding_type=spec.type.to_coded_concept(),
            algorithm_id=algorithm,
            measurements=measurements))
    observation = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=report_uids(f"{algorithm_name}|device")[1], name=algorithm_name,
                manufacturer_name="RAFSS", model_name=algorithm_name)))
    content = hd.sr.MeasurementReport(
        observation_context=observation,
        procedure_reported=hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure"),
        imaging_measurements=groups)
    series_uid, sop_uid = report_uids(job_key)
    report = hd.sr.Comprehensive3DSR(
        evidence=[seg, *source.source_datasets], content=content[0],
        series_instance_uid=series_uid, series_number=REPORT_SERIES_NUMBER,
        sop_instance_uid=sop_uid, instance_number=1, manufacturer="RAFSS",
        is_complete=True, is_final=False, is_verified=False)
    report.SeriesDescription = REPORT_SERIES_DESCRIPTION
    return report


def read_measurements(report: Dataset, concept: hd.sr.CodedConcept = VOLUME
                      ) -> dict[str, float]:
    """``{tracking identifier: value}`` of one measurement read back from a report."""
    import copy

    parsed = hd.sr.Comprehensive3DSR.from_dataset(copy.deepcopy(report))
    out: dict[str, float] = {}
    for group in parsed.content.get_volumetric_roi_measurement_groups():
        for m in group.get_measurements(name=concept):
            out[group.tracking_identifier] = float(m.value)
    return out


def read_volumes(report: Dataset) -> dict[str, float]:
    """``{tracking identifier: volume mL}`` read back from a report (tests, tools)."""
    return read_measurements(report, VOLUME)
