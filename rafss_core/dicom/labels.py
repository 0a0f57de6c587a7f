"""Label codes (SNOMED CT defaults and a colour palette) and a task's labels as SEG segments.

Duck-typed over label objects (anything with the attributes of
:class:`rafss_core.store.models.Label`), so this package stays free of the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rafss_core.dicom.seg import CodeTriplet, SegmentSpec

__all__ = ["ANATOMY", "GENERIC_TYPE", "KNOWN_TYPES", "PALETTE", "LabelLike", "task_segments"]

# Default codes for well-known label names (SNOMED CT); anything else gets a generic code.
ANATOMY = ("SCT", "123037004", "Anatomical Structure")
KNOWN_TYPES: dict[str, tuple[str, str, str]] = {
    "LV": ("SCT", "32547003", "Left ventricle cavity"),
    "RV": ("SCT", "71836000", "Right ventricle cavity"),
    "MYO": ("SCT", "74281007", "Myocardium"),
    "LIVER": ("SCT", "10200004", "Liver"),
    "SPLEEN": ("SCT", "78961009", "Spleen"),
    "KIDNEY": ("SCT", "64033007", "Kidney"),
    "PANCREAS": ("SCT", "15776009", "Pancreas"),
    "LUNG": ("SCT", "39607008", "Lung"),
    "HEART": ("SCT", "80891009", "Heart"),
    "AORTA": ("SCT", "15825003", "Aorta"),
}
GENERIC_TYPE = ("SCT", "91723000", "Anatomical Structure")
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#ffe119", "#f58231", "#911eb4", "#46f0f0",
           "#f032e6", "#bcf60c", "#fabebe"]


class LabelLike(Protocol):
    """What :func:`task_segments` reads of a task's label (a store ``Label`` fits)."""

    number: int
    name: str
    category_scheme: str
    category_value: str
    category_meaning: str
    type_scheme: str
    type_value: str
    type_meaning: str
    colour_rgb: str


def task_segments(labels: Sequence[LabelLike]) -> list[SegmentSpec]:
    """A task's labels as DICOM-SEG segment descriptions.

    Each label's number, name, category and type codes carry over; ``colour_rgb``
    (``#rrggbb``) becomes the segment's RGB colour, 0-255 per channel.
    """
    return [
        SegmentSpec(
            label=lab.number, name=lab.name,
            category=CodeTriplet(lab.category_value, lab.category_scheme, lab.category_meaning),
            type=CodeTriplet(lab.type_value, lab.type_scheme, lab.type_meaning),
            color=(int(lab.colour_rgb[1:3], 16), int(lab.colour_rgb[3:5], 16),
                   int(lab.colour_rgb[5:7], 16)))
        for lab in labels
    ]
