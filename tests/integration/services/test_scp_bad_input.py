"""A malformed-input corpus (53 files) sent with storescu, mixed with valid instances.

storescu parses and re-encodes every file before sending, so it refuses the ones it cannot
read ("Bad DICOM file": truncated, garbage, most header fuzz) and the ones whose SOP class was
not negotiated ("No presentation context": unknown transfer syntax in the meta, a fuzzed SOP
class UID). Those are sent again with pynetdicom *as raw bytes* (chunked send, no re-encoding),
so the SCP sees the malformed data itself wherever the file meta is readable.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config

from services.spool import spool_path
from tests.integration.services.conftest import instance_rows
from tests.integration.services.corpus import CorpusFile, build_corpus
from tests.integration.services.peers import HOST, echoscu, storescu

pytestmark = pytest.mark.data

SENDING = re.compile(r"^I: Sending file: (.+)$")


def parse_storescu(output: str) -> dict[str, str]:
    """``{path: outcome}``: 'success', 'warning', 'failure', 'bad-file' or 'no-context'."""
    outcomes: dict[str, str] = {}
    current: str | None = None
    for line in output.splitlines():
        match = SENDING.match(line)
        if match:
            current = match.group(1)
            continue
        if current is None:
            continue
        if "Received Store Response (Success)" in line:
            outcomes[current] = "success"
        elif "Received Store Response (Warning" in line:
            outcomes[current] = "warning"
        elif "Received Store Response" in line:
            outcomes[current] = "failure"
        elif "Bad DICOM file" in line:
            outcomes[current] = "bad-file"
        elif "No presentation context" in line:
            outcomes[current] = "no-context"
    return outcomes


def send_raw(port: int, paths: list[Path]) -> dict[str, str]:
    """Send files byte for byte with pynetdicom; ``{path: outcome}`` like :func:`parse_storescu`.

    Files without a readable file meta cannot be sent at all over DIMSE ('unsendable').
    """
    outcomes: dict[str, str] = {}
    metas = {}
    for path in paths:
        try:
            meta = read_file_meta_info(path)
            metas[path] = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        except Exception:
            outcomes[str(path)] = "unsendable"
    ae = AE(ae_title="RAFSS-TEST")
    for sop_class, syntax in sorted(set(metas.values())):
        try:
            ae.add_requested_context(sop_class, syntax)
        except ValueError:  # not even a UID: pynetdicom cannot propose it
            for path in [p for p, m in metas.items() if m == (sop_class, syntax)]:
                outcomes[str(path)] = "unsendable"
                del metas[path]
    assoc = ae.associate(HOST, port, ae_title="RAFSS")
    assert assoc.is_established
    try:
        for path in metas:
            try:
                status = assoc.send_c_store(path)
            except (ValueError, AttributeError, KeyError):
                outcomes[str(path)] = "no-context"
                continue
            code = int(status.Status) if "Status" in status else -1
            outcomes[str(path)] = (
                "success" if code == 0 else "warning" if 0xB000 <= code <= 0xBFFF else "failure"
            )
    finally:
        assoc.release()
    return outcomes


def test_malformed_corpus_is_refused_or_stored_invalid(
    scp, db_session_factory, make_series, tmp_path: Path, monkeypatch
) -> None:
    valid = make_series("corpus-valid")
    corpus = build_corpus(valid[0], tmp_path / "bad")
    assert len(corpus) >= 50
    # valid instances interleaved with the bad ones, all in one association
    sent_valid = valid[1:]
    # storescu ignores an unknown transfer syntax in the file meta, detects the real encoding and
    # sends a valid data set; an SCP never sees file meta, so these go byte for byte through
    # pynetdicom, proposing the unknown syntax, which the SCP must refuse per context
    raw_only = [c for c in corpus if c.category == "unknown-transfer-syntax"]
    mixed: list[Path] = []
    for i, item in enumerate(c for c in corpus if c not in raw_only):
        mixed.append(item.path)
        if i % 6 == 0 and sent_valid[len(mixed) // 7 :]:
            mixed.append(sent_valid[min(i // 6, len(sent_valid) - 1)])
    mixed.extend(p for p in sent_valid if p not in mixed)

    result = storescu(scp.port, mixed)
    outcomes = parse_storescu(result.stdout + result.stderr)
    refused_by_storescu = [
        c
        for c in corpus
        if c not in raw_only and outcomes.get(str(c.path)) in ("bad-file", "no-context", None)
    ]
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    outcomes.update(send_raw(scp.port, [c.path for c in refused_by_storescu + raw_only]))
    for item in raw_only:
        assert outcomes[str(item.path)] == "no-context", item

    # every valid instance in the same association is stored
    for path in sent_valid:
        assert outcomes[str(path)] == "success", path
    valid_uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in valid]
    rows = instance_rows(db_session_factory, valid_uids[1:])
    assert sorted(rows) == sorted(valid_uids[1:])
    assert {state for state, _ in rows.values()} == {"received"}

    corpus_uids = [c.sop_instance_uid for c in corpus if c.sop_instance_uid]
    corpus_rows = instance_rows(db_session_factory, corpus_uids)
    reached_scp = 0
    for item in corpus:
        outcome = outcomes[str(item.path)]
        row = corpus_rows.get(item.sop_instance_uid or "")
        reached_scp += outcome in ("success", "warning", "failure")
        if item.fuzzed:
            check_fuzzed(item, outcome, scp, db_session_factory)
            continue
        assert outcome in ("failure", "warning", "no-context", "unsendable"), (item, outcome)
        if outcome == "warning":
            assert row is not None and row[0] == "invalid", (item, row)
        else:
            assert row is None, (item, row)

    summary = Counter((c.category, outcomes[str(c.path)]) for c in corpus)
    print("\ncorpus outcomes:", dict(sorted(summary.items())))
    print("refused by storescu itself:", sorted(c.path.name for c in refused_by_storescu))
    # the SCP saw most of the corpus itself, not just the senders' own refusals
    assert reached_scp >= 35, summary
    # nothing crashed: the SCP still answers
    assert echoscu(scp.port).returncode == 0


def actual_uid(path: Path) -> str | None:
    """The SOPInstanceUID the fuzzed file really carries (a flip may have changed it)."""
    try:
        return str(pydicom.dcmread(path, force=True, stop_before_pixels=True).SOPInstanceUID)
    except Exception:
        return None


def check_fuzzed(item: CorpusFile, outcome: str, scp, db_session_factory) -> None:
    """A fuzzed file may be harmless; whatever happened must be consistent."""
    uid = actual_uid(item.path) if outcome in ("success", "warning") else item.sop_instance_uid
    row = instance_rows(db_session_factory, [uid]).get(uid or "") if uid else None
    if outcome == "success":
        assert row is not None and row[0] == "received", item
        assert Path(row[1]) == spool_path(scp.config.spool_dir, uid or "")
        assert Path(row[1]).exists()
    elif outcome == "warning":
        assert row is not None and row[0] == "invalid", item
    else:
        assert row is None or row[0] == "invalid", (item, outcome, row)
