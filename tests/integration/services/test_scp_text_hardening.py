"""C-STORE of instances whose string elements hold NUL bytes or invalid characters.

Each is stored (0x0000, in the spool, recorded) with its text attributes cleaned for Postgres,
the handler keeps serving the association, and nothing logged carries the patient's name.
Sent byte for byte with pynetdicom, so the SCP sees the bytes as written.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa
from pydicom.dataelem import DataElement
from pynetdicom import _config

from tests.integration.services.conftest import instance_rows
from tests.integration.services.test_scp_bad_input import send_raw

pytestmark = pytest.mark.data

PATIENT = "DOE^JANE"


def _raw(ds: pydicom.Dataset, keyword: str, vr: str, value: bytes) -> None:
    ds[keyword] = DataElement(pydicom.datadict.tag_for_keyword(keyword), vr, value)


MUTATIONS = {
    "nul-bytes": lambda ds: (
        _raw(ds, "SeriesDescription", "LO", b"CINE\x00SAX\x00"),
        _raw(ds, "PatientName", "PN", PATIENT.encode() + b"\x00\x00"),
        _raw(ds, "BodyPartExamined", "CS", b"HE\x00ART "),
        _raw(ds, "Modality", "CS", b"MR\x00\x00"),
    ),
    "invalid-utf8": lambda ds: (
        _raw(ds, "SpecificCharacterSet", "CS", b"ISO_IR 192"),
        _raw(ds, "SeriesDescription", "LO", b"CINE \xff\xfe\xc3("),
        _raw(ds, "PatientName", "PN", PATIENT.encode() + b"\xff"),
    ),
    "encoded-surrogate": lambda ds: (
        _raw(ds, "SpecificCharacterSet", "CS", b"ISO_IR 192"),
        _raw(ds, "SeriesDescription", "LO", b"CINE \xed\xa0\x80 SAX"),
    ),
    "unknown-charset": lambda ds: (
        _raw(ds, "SpecificCharacterSet", "CS", b"ISO_IR 999"),
        _raw(ds, "SeriesDescription", "LO", b"CINE \xe9\xe8 SAX"),
        _raw(ds, "PatientName", "PN", PATIENT.encode() + b"\xe9"),
    ),
}


def _storable(text: str | None) -> bool:
    if text is None:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def test_nul_bytes_and_invalid_characters_are_stored_and_logged_without_phi(
        scp, db_session_factory, make_series, tmp_path: Path, monkeypatch, caplog) -> None:
    from rafss_core.store.models import Instance, Series

    files = make_series("text-hardening")
    sent: dict[str, str] = {}  # path -> SOPInstanceUID
    paths = []
    for (name, mutate), source in zip(MUTATIONS.items(), files, strict=False):
        ds = pydicom.dcmread(source)
        mutate(ds)
        path = tmp_path / f"{name}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=False)
        sent[str(path)] = str(ds.SOPInstanceUID)
        paths.append(path)
    # a clean instance after the others: the association is still served
    clean = files[len(MUTATIONS)]
    sent[str(clean)] = str(pydicom.dcmread(clean, stop_before_pixels=True).SOPInstanceUID)
    paths.append(clean)

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    with caplog.at_level(logging.DEBUG):
        outcomes = send_raw(scp.port, paths)
    assert {outcomes[str(p)] for p in paths} == {"success"}, outcomes

    rows = instance_rows(db_session_factory, list(sent.values()))
    assert sorted(rows) == sorted(sent.values())
    for state, spool in rows.values():
        assert state == "received" and Path(spool).is_file()
    with db_session_factory() as session:
        texts = session.execute(
            sa.select(Series.series_description, Series.modality, Series.body_part)
            .join(Instance, Instance.series_id == Series.id)
            .where(Instance.sop_instance_uid.in_(list(sent.values())))).all()
    assert texts and all(_storable(t) for row in texts for t in row)
    descriptions = {row[0] for row in texts}
    assert "CINESAX" in descriptions  # NULs removed, the rest kept
    assert ("MR", "HEART") in {(row[1], row[2]) for row in texts}

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "DOE" not in logged and "JANE" not in logged
