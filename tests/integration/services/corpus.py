"""A corpus of malformed DICOM files, generated from a valid ACDC MR slice.

Each entry knows its category, the SOPInstanceUID it carries (None where it has none) and
whether it is *bad* (must be refused or stored as invalid) or merely *fuzzed* (random byte
flips can land somewhere harmless, so any clean outcome is acceptable there).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    category: str
    sop_instance_uid: str | None
    fuzzed: bool = False


def _renew(ds: Dataset) -> tuple[Dataset, str]:
    out = copy.deepcopy(ds)
    uid = generate_uid()
    out.SOPInstanceUID = uid
    out.file_meta.MediaStorageSOPInstanceUID = uid
    return out, uid


def _write(ds: Dataset, path: Path) -> Path:
    pydicom.dcmwrite(path, ds, enforce_file_format=False)
    return path


def build_corpus(valid_file: Path, out_dir: Path, seed: int = 20260) -> list[CorpusFile]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    base = pydicom.dcmread(valid_file)
    corpus: list[CorpusFile] = []

    def mutated(category: str, mutate, name: str) -> None:
        ds, uid = _renew(base)
        mutate(ds)
        path = _write(ds, out_dir / f"{name}.dcm")
        corpus.append(CorpusFile(path, category, uid))

    # truncated files (10)
    full_len = len(valid_file.read_bytes())
    for cut in (64, 132, 200, 400, 700, 1200, full_len // 2, full_len - 1000, full_len - 3, -1):
        ds, uid = _renew(base)
        path = _write(ds, out_dir / f"truncated-{cut}.dcm")
        data = path.read_bytes()
        path.write_bytes(data[:cut])
        corpus.append(CorpusFile(path, "truncated", uid))

    # missing or empty pixel data (3)
    mutated("no-pixel-data", lambda ds: ds.__delattr__("PixelData"), "no-pixels")
    mutated("no-pixel-data", lambda ds: setattr(ds, "PixelData", b""), "empty-pixels")

    def no_pixels_no_bits(ds: Dataset) -> None:
        del ds.PixelData
        del ds.BitsAllocated

    mutated("no-pixel-data", no_pixels_no_bits, "no-pixels-no-bits")

    # Rows/Columns/BitsAllocated/frames disagreeing with the PixelData length (6)
    mismatches = {
        "rows-plus-1": lambda ds: setattr(ds, "Rows", ds.Rows + 1),
        "columns-minus-1": lambda ds: setattr(ds, "Columns", ds.Columns - 1),
        "rows-double": lambda ds: setattr(ds, "Rows", ds.Rows * 2),
        "bits-8": lambda ds: setattr(ds, "BitsAllocated", 8),
        "frames-3": lambda ds: setattr(ds, "NumberOfFrames", 3),
        "samples-3": lambda ds: setattr(ds, "SamplesPerPixel", 3),
    }
    for name, mutate in mismatches.items():
        mutated("pixel-length-mismatch", mutate, name)

    # an unknown transfer syntax in the file meta (3); same length keeps the meta group valid
    for i, fake in enumerate(("1.2.840.10008.9.9.9", "1.2.840.99999.1.2.1", "9.9.999999999.9.9.9")):
        ds, uid = _renew(base)
        path = _write(ds, out_dir / f"unknown-ts-{i}.dcm")
        data = path.read_bytes()
        real = str(ds.file_meta.TransferSyntaxUID).encode()
        assert len(fake) == len(real)
        path.write_bytes(data.replace(real, fake.encode(), 1))
        corpus.append(CorpusFile(path, "unknown-transfer-syntax", uid))

    # absurd dimensions (3)
    def huge(ds: Dataset) -> None:
        ds.Rows = ds.Columns = 65535

    mutated("absurd-dimensions", huge, "rows-cols-65535")
    mutated("absurd-dimensions", lambda ds: setattr(ds, "Rows", 0), "rows-0")
    mutated("absurd-dimensions", lambda ds: setattr(ds, "Columns", 0), "columns-0")

    # missing or malformed UIDs (6)
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"):
        ds, uid = _renew(base)
        delattr(ds, keyword)
        path = _write(ds, out_dir / f"missing-{keyword}.dcm")
        corpus.append(CorpusFile(path, "missing-uid", None if keyword == "SOPInstanceUID" else uid))
    for name, bad_uid in (("uid-path-traversal", "../../../etc/x"), ("uid-too-long", "1." * 40)):
        ds, _ = _renew(base)
        ds.SOPInstanceUID = bad_uid
        ds.file_meta.MediaStorageSOPInstanceUID = bad_uid
        path = _write(ds, out_dir / f"{name}.dcm")
        corpus.append(CorpusFile(path, "malformed-uid", None))

    # random byte flips (15): 10 in the header, 5 anywhere
    for i in range(15):
        ds, uid = _renew(base)
        path = _write(ds, out_dir / f"fuzz-{i:02d}.dcm")
        data = bytearray(path.read_bytes())
        high = 2000 if i < 10 else len(data)
        for _ in range(rng.randint(1, 24)):
            data[rng.randrange(132, high)] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        corpus.append(CorpusFile(path, "fuzzed", uid, fuzzed=True))

    # non-DICOM garbage (7), two of them wrapped in a valid file meta so they can be sent
    garbage = {
        "garbage-random": rng.randbytes(4096),
        "garbage-text": b"this is not a DICOM file\n" * 40,
        "garbage-empty": b"",
        "garbage-png": b"\x89PNG\r\n\x1a\n" + rng.randbytes(2048),
        "garbage-dicm-only": b"\x00" * 128 + b"DICM",
    }
    for name, data in garbage.items():
        path = out_dir / f"{name}.dcm"
        path.write_bytes(data)
        corpus.append(CorpusFile(path, "garbage", None))
    for i in range(2):
        ds, uid = _renew(base)
        path = _write(ds, out_dir / f"garbage-body-{i}.dcm")
        data = path.read_bytes()
        meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")
        path.write_bytes(data[:meta_end] + rng.randbytes(3000))
        corpus.append(CorpusFile(path, "garbage-body", None))
    return corpus
