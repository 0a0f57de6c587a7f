"""Reading a received instance's header into an :class:`InstanceRecord`, without its pixels.

:func:`read_header` parses the encoded file (pydicom never decodes pixel data on read; the
PixelData element stays a raw byte string) and returns what the SCP records, plus cheap
consistency *problems*:

- an image (it has Rows) without pixel data;
- zero or absurd dimensions;
- for native (uncompressed) syntaxes, a PixelData length that disagrees with
  Rows x Columns x SamplesPerPixel x BitsAllocated/8 x NumberOfFrames, which also catches files
  truncated inside their pixel data;
- geometry attributes with the wrong number of values.

An instance with problems is still stored and recorded, with ``state = 'invalid'``, and the
sender gets a warning (0xB007, data set does not match SOP class). Input without the UIDs needed
to key and record it raises :class:`UnreadableInstanceError` instead (a failure status).
"""

from __future__ import annotations

import datetime as dt
import io
import math
from dataclasses import dataclass, replace
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

from rafss_core.store.repositories.instances import InstanceGeometry, InstanceRecord
from services.spool import is_valid_uid

PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, Float-, DoubleFloat-
MAX_DIMENSION = 32768  # rows/columns beyond this are treated as corrupt, not as an image
MAX_INT32 = 2**31 - 1
MAX_NATIVE_BYTES = 4 * 2**30  # 4 GiB of native pixels in one instance is not plausible


class UnreadableInstanceError(Exception):
    """The input cannot be keyed or recorded (no header, missing or malformed UIDs)."""


@dataclass(frozen=True)
class HeaderInfo:
    """What the SCP records about one instance, and why it is invalid (if it is)."""

    record: InstanceRecord
    problems: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems


def read_header(
    data: bytes,
    *,
    calling_ae: str | None = None,
    calling_ip: str | None = None,
    received_at: dt.datetime | None = None,
) -> HeaderInfo:
    """Parse an encoded DICOM file (preamble + meta + data set); never decodes pixels.

    ``record.spool_path`` is left empty: the caller knows where it stores the file.
    """
    try:
        ds = dcmread(io.BytesIO(data))
        uids = {
            key: ds.get(key)
            for key in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")
        }
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise UnreadableInstanceError(f"header unreadable ({type(exc).__name__})") from exc
    for key, value in uids.items():
        if value is None or not is_valid_uid(str(value)):
            raise UnreadableInstanceError(f"{key} missing or not a valid UID")
    try:
        return _header_info(ds, data, uids, calling_ae, calling_ip, received_at)
    except Exception as exc:
        reason = f"header attributes unreadable ({type(exc).__name__})"
        raise UnreadableInstanceError(reason) from exc


def _header_info(
    ds: Dataset,
    data: bytes,
    uids: dict[str, Any],
    calling_ae: str | None,
    calling_ip: str | None,
    received_at: dt.datetime | None,
) -> HeaderInfo:
    problems: list[str] = []
    transfer_syntax = ds.file_meta.get("TransferSyntaxUID") if ds.get("file_meta") else None
    geometry = InstanceGeometry(
        rows=_int(ds, "Rows", problems, 0, 65535),
        columns=_int(ds, "Columns", problems, 0, 65535),
        number_of_frames=_int(ds, "NumberOfFrames", problems, 1, MAX_INT32),
        image_position_patient=_floats(ds, "ImagePositionPatient", 3, problems),  # type: ignore[arg-type]
        image_orientation_patient=_floats(ds, "ImageOrientationPatient", 6, problems),  # type: ignore[arg-type]
        pixel_spacing=_floats(ds, "PixelSpacing", 2, problems),  # type: ignore[arg-type]
        slice_thickness=_float(ds, "SliceThickness", problems),
    )
    problems.extend(pixel_problems(ds, geometry, transfer_syntax))
    record = InstanceRecord(
        study_instance_uid=str(uids["StudyInstanceUID"]),
        series_instance_uid=str(uids["SeriesInstanceUID"]),
        sop_instance_uid=str(uids["SOPInstanceUID"]),
        sop_class_uid=str(uids["SOPClassUID"]),
        spool_path="",
        modality=_text(ds, "Modality", 16),
        body_part=_text(ds, "BodyPartExamined", 64),
        series_description=_text(ds, "SeriesDescription", 128),
        calling_ae=(calling_ae or "").strip()[:16] or None,
        calling_ip=calling_ip,
        transfer_syntax_uid=str(transfer_syntax) if is_valid_uid(str(transfer_syntax)) else None,
        instance_number=_int(ds, "InstanceNumber", [], -MAX_INT32, MAX_INT32),
        size_bytes=len(data),
        geometry=geometry,
        received_at=received_at,
    )
    return HeaderInfo(record=record, problems=tuple(problems))


def with_spool_path(info: HeaderInfo, spool_path: str) -> HeaderInfo:
    return replace(info, record=replace(info.record, spool_path=spool_path))


def pixel_problems(ds: Dataset, geometry: InstanceGeometry, transfer_syntax: object) -> list[str]:
    """Cheap consistency checks of the pixel data against the image attributes."""
    raw = next((ds.get_item(t, keep_deferred=True) for t in PIXEL_DATA_TAGS if t in ds), None)
    is_image = "Rows" in ds or "Columns" in ds
    if raw is None:
        return ["image attributes without pixel data"] if is_image else []
    rows, columns = geometry.rows, geometry.columns
    if not rows or not columns:
        return ["pixel data without Rows/Columns"]
    if rows > MAX_DIMENSION or columns > MAX_DIMENSION:
        return [f"absurd dimensions {rows}x{columns}"]
    try:
        encapsulated = UID(str(transfer_syntax)).is_encapsulated
    except Exception:
        encapsulated = False
    value = getattr(raw, "value", None)
    if encapsulated or raw.tag != 0x7FE00010:
        return [] if value else ["empty pixel data"]
    bits = _int(ds, "BitsAllocated", [], 1, 64)
    samples = _int(ds, "SamplesPerPixel", [], 1, 4) or 1
    if not bits:
        return ["pixel data without BitsAllocated"]
    pixels = rows * columns * samples * (geometry.number_of_frames or 1)
    expected = math.ceil(pixels / 8) if bits == 1 else pixels * (bits // 8)
    if expected > MAX_NATIVE_BYTES:
        return [f"absurd pixel data size {expected} bytes"]
    actual = len(value) if isinstance(value, bytes | bytearray) else 0
    if actual not in (expected, expected + (expected % 2)):
        return [f"pixel data is {actual} bytes, attributes need {expected}"]
    return []


def _int(ds: Dataset, key: str, problems: list[str], low: int, high: int) -> int | None:
    if key not in ds:
        return None
    try:
        value = ds[key].value
        number = int(value[0] if isinstance(value, list | tuple) else value)
    except Exception:
        problems.append(f"{key} is not an integer")
        return None
    if not low <= number <= high:
        problems.append(f"{key} out of range")
        return None
    return number


def _float(ds: Dataset, key: str, problems: list[str]) -> float | None:
    if key not in ds or ds[key].value in (None, ""):
        return None
    try:
        number = float(ds[key].value)
    except Exception:
        problems.append(f"{key} is not a number")
        return None
    if not math.isfinite(number):
        problems.append(f"{key} is not finite")
        return None
    return number


def _floats(ds: Dataset, key: str, n: int, problems: list[str]) -> tuple[float, ...] | None:
    if key not in ds or ds[key].value in (None, ""):
        return None
    try:
        values = tuple(float(v) for v in ds[key].value)
    except Exception:
        problems.append(f"{key} is not numeric")
        return None
    if len(values) != n or not all(math.isfinite(v) for v in values):
        problems.append(f"{key} needs {n} finite values")
        return None
    return values


def _text(ds: Dataset, key: str, limit: int) -> str | None:
    try:
        value = ds.get(key)
    except Exception:
        return None
    if value is None:
        return None
    # Postgres stores neither NUL bytes nor unpaired surrogates: drop the one, replace the other
    text = str(value).replace("\x00", "").strip()
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:limit] or None
