"""Reference image and mask storage: arrays as compressed ``.npz`` bytes in ``bytea`` columns.

Why in the row rather than as files: reference sets are small (a few studies per task, so a
few hundred slices of a few hundred KB), approval becomes one transaction, and a database backup
is complete. ``np.load(..., allow_pickle=False)`` keeps loading safe.
"""

from __future__ import annotations

import io

import numpy as np

_KEY = "array"


def encode_array(array: np.ndarray) -> bytes:
    """Compress one array into ``.npz`` bytes (dtype and shape preserved)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{_KEY: np.ascontiguousarray(array)})
    return buf.getvalue()


def decode_array(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_array`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return npz[_KEY]
