"""The spool: received instances on disk, written atomically and keyed by SOPInstanceUID.

Layout::

    <spool>/<first 2 hex digits of sha1(uid)>/<SOPInstanceUID>.dcm   stored instances
    <quarantine>/<UTC time>-<sha1 of bytes>.dcm (+ .reason.txt)     refused input, kept for triage

A write goes to a temporary file in the target directory, is fsynced, renamed over the final
name (atomic on POSIX) and the directory is fsynced, so a crash leaves either the old file, the
new file, or a stray ``.tmp`` that :func:`stray_temp_files` finds, never a torn instance.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

# DICOM UIDs: digits separated by dots, at most 64 characters (PS3.5 9.1). Checking this also
# keeps a hostile SOPInstanceUID such as "../../x" out of the file system path.
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
TEMP_SUFFIX = ".tmp"


def is_valid_uid(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 64 and bool(_UID_RE.match(value))


def spool_path(spool_dir: Path, sop_instance_uid: str) -> Path:
    """Where the instance with this UID lives in the spool (the UID must be valid)."""
    if not is_valid_uid(sop_instance_uid):
        raise ValueError(f"not a DICOM UID: {sop_instance_uid!r}")
    shard = hashlib.sha1(sop_instance_uid.encode("ascii")).hexdigest()[:2]
    return spool_dir / shard / f"{sop_instance_uid}.dcm"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temp file, fsync, rename, fsync dir).

    Raises ``OSError`` (e.g. ``ENOSPC``) with nothing left behind but possibly the directory.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def quarantine(quarantine_dir: Path, data: bytes, reason: str) -> Path:
    """Keep refused input for triage, with the reason beside it; returns the file's path."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    digest = hashlib.sha1(data).hexdigest()[:16]
    path = quarantine_dir / f"{stamp}-{digest}.dcm"
    write_atomic(path, data)
    write_atomic(path.with_suffix(".reason.txt"), (reason + "\n").encode("utf-8"))
    return path


def spooled_files(spool_dir: Path) -> Iterator[Path]:
    """Every stored instance file in the spool (shard directories only, no temp files)."""
    if not spool_dir.is_dir():
        return
    for shard in sorted(spool_dir.iterdir()):
        if shard.is_dir() and len(shard.name) == 2:
            for path in sorted(shard.glob("*.dcm")):
                if not path.name.startswith("."):
                    yield path


def stray_temp_files(spool_dir: Path) -> list[Path]:
    """Temporary files left by a crash mid-write (never acknowledged; safe to delete)."""
    return sorted(spool_dir.glob(f"*/.*{TEMP_SUFFIX}"))
