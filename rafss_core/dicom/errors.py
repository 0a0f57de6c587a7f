"""Errors of the DICOM file layer. Messages name UIDs and files, never patient data."""

from __future__ import annotations


class SeriesError(ValueError):
    """The files cannot be assembled into one volume (bad geometry, mixed series, undecodable)."""


class SegError(ValueError):
    """A DICOM-SEG cannot be written for, or read onto, the given source series."""
