"""Pure parts of the SCP: header reading, consistency checks, spool paths, retry policy."""

from __future__ import annotations

import datetime as dt
import io
import ssl
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from rafss_core.store.repositories.sources import AllowedSourceEntry
from services.allowlist import entry_admits
from services.ingest import UnreadableInstanceError, read_header
from services.scp import storage_sop_classes
from services.scu import RetryPolicy, is_permanent_status
from services.spool import is_valid_uid, quarantine, spool_path, write_atomic
from services.tls import TlsServerConfig, client_context


def mr_bytes(**changes: object) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    uid = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "SECRET^NAME"
    ds.Modality = "MR"
    ds.BodyPartExamined = "HEART"
    ds.SeriesDescription = "cine"
    ds.InstanceNumber = 3
    ds.ImagePositionPatient = [0.0, 1.0, 2.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [1.5, 1.5]
    ds.SliceThickness = 8.0
    ds.Rows, ds.Columns = 4, 6
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.zeros((4, 6), np.uint16).tobytes()
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.preamble = b"\0" * 128
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=False)
    return buffer.getvalue()


def test_valid_header_gives_a_complete_record() -> None:
    info = read_header(mr_bytes(), calling_ae="MODALITY ", calling_ip="10.0.0.5")
    r = info.record
    assert info.valid
    assert (r.modality, r.body_part, r.series_description) == ("MR", "HEART", "cine")
    assert (r.calling_ae, r.calling_ip, r.instance_number) == ("MODALITY", "10.0.0.5", 3)
    assert r.transfer_syntax_uid == ExplicitVRLittleEndian
    assert r.geometry.rows == 4 and r.geometry.pixel_spacing == (1.5, 1.5)
    assert r.geometry.image_orientation_patient == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert "SECRET" not in repr(r)  # no PHI in what is recorded


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"PixelData": None}, "without pixel data"),
        ({"Rows": 5}, "attributes need"),
        ({"BitsAllocated": 8}, "attributes need"),
        ({"Rows": 65535, "Columns": 65535}, "absurd"),
        ({"Columns": 0}, "Rows/Columns"),
        ({"ImagePositionPatient": [1.0, 2.0]}, "ImagePositionPatient"),
        ({"PixelSpacing": ["nan", "1"]}, "PixelSpacing"),
    ],
)
def test_inconsistent_instances_are_flagged(changes: dict, problem: str) -> None:
    info = read_header(mr_bytes(**changes))
    assert not info.valid
    assert any(problem in p for p in info.problems), info.problems


def test_odd_length_padding_of_pixel_data_is_accepted() -> None:
    data = mr_bytes(Rows=1, Columns=3, BitsAllocated=8, BitsStored=8, HighBit=7, PixelData=b"abc")
    assert read_header(data).valid


@pytest.mark.parametrize(
    "changes",
    [
        {"SOPInstanceUID": None},
        {"StudyInstanceUID": None},
        {"SeriesInstanceUID": None},
        {"SOPClassUID": None},
        {"SOPInstanceUID": "../../etc/passwd"},
        {"SeriesInstanceUID": "1." * 40},
    ],
)
def test_missing_or_malformed_uids_are_unreadable(changes: dict) -> None:
    with pytest.raises(UnreadableInstanceError, match="UID"):
        read_header(mr_bytes(**changes))


@pytest.mark.parametrize("data", [b"", b"garbage" * 100, b"\0" * 128 + b"DICM", mr_bytes()[:150]])
def test_garbage_is_unreadable(data: bytes) -> None:
    with pytest.raises(UnreadableInstanceError):
        read_header(data)


def test_spool_path_is_sharded_and_refuses_non_uids(tmp_path: Path) -> None:
    path = spool_path(tmp_path, "1.2.3.4")
    assert path.parent.parent == tmp_path and len(path.parent.name) == 2
    assert path.name == "1.2.3.4.dcm"
    for bad in ("../x", "1.2.a", "", "1." * 40, "1..2"):
        assert not is_valid_uid(bad)
        with pytest.raises(ValueError):
            spool_path(tmp_path, bad)


def test_write_atomic_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "ab" / "1.2.dcm"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["1.2.dcm"]


def test_quarantine_keeps_the_reason(tmp_path: Path) -> None:
    kept = quarantine(tmp_path, b"junk", "SOPInstanceUID missing")
    assert kept.read_bytes() == b"junk"
    assert kept.with_suffix(".reason.txt").read_text().strip() == "SOPInstanceUID missing"


def test_every_storage_sop_class_is_supported() -> None:
    classes = storage_sop_classes()
    assert len(classes) > 128  # more than one association could request
    assert "1.2.840.10008.5.1.4.1.1.66.4" in classes  # Segmentation
    assert MRImageStorage in classes


def test_allow_list_entries_match_ae_and_network() -> None:
    anywhere = AllowedSourceEntry("CT1", None)
    subnet = AllowedSourceEntry("CT2", "10.1.0.0/16")
    host = AllowedSourceEntry("CT3", "192.168.1.7/32")
    assert entry_admits(anywhere, "CT1", "1.2.3.4") and entry_admits(anywhere, "CT1 ", None)
    assert not entry_admits(anywhere, "CT9", "1.2.3.4")
    assert entry_admits(subnet, "CT2", "10.1.200.3") and not entry_admits(subnet, "CT2", "10.2.0.1")
    assert entry_admits(host, "CT3", "192.168.1.7") and not entry_admits(host, "CT3", None)


def test_retry_policy_backs_off_exponentially_with_a_cap() -> None:
    policy = RetryPolicy(base_seconds=10, factor=3, max_attempts=5, max_delay_seconds=200)
    delays = [policy.delay_after(n) for n in range(1, 6)]
    assert delays == [dt.timedelta(seconds=s) for s in (10, 30, 90, 200, 200)]


def test_permanent_statuses() -> None:
    assert is_permanent_status(0x0122) and is_permanent_status(0xA900)
    assert not is_permanent_status(0xA700) and not is_permanent_status(0xC000)


def test_tls_contexts_require_tls_1_2(tmp_path: Path) -> None:
    assert client_context(None).minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(ValueError, match="ca_file"):
        from services.tls import server_context

        server_context(TlsServerConfig(tmp_path / "c", tmp_path / "k", require_client_cert=True))
