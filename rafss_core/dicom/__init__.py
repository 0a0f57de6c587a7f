"""DICOM files (not networking): series -> ``Volume``, label map <-> DICOM-SEG.

Imports only ``rafss_core.segmentation`` (dependency rule, DESIGN.md §3).

Pixel decoding uses pydicom 3's plugins. For the compressed transfer syntaxes RAFSS relies on
non-GPL plugins only: pydicom's native RLE decoder, Pillow (JPEG baseline/extended, JPEG 2000),
pyjpegls (JPEG-LS) and python-gdcm (JPEG lossless); pylibjpeg + pylibjpeg-openjpeg add JPEG 2000
and HTJ2K (decode and encode). pylibjpeg-libjpeg (GPLv3) is deliberately not used.
"""

from rafss_core.dicom.errors import SegError, SeriesError
from rafss_core.dicom.seg import (
    AlgorithmInfo,
    CodeTriplet,
    DecodedSeg,
    SegmentSpec,
    read_seg,
    seg_uids,
    write_seg,
)
from rafss_core.dicom.series import LoadedSeries, SourceInstance, load_series

__all__ = [
    "AlgorithmInfo",
    "CodeTriplet",
    "DecodedSeg",
    "LoadedSeries",
    "SegError",
    "SegmentSpec",
    "SeriesError",
    "SourceInstance",
    "load_series",
    "read_seg",
    "seg_uids",
    "write_seg",
]
