"""What use cases return: plain frozen dataclasses (the API serialises them as JSON)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


class View:
    def as_dict(self) -> dict[str, Any]:
        return {k: _iso(v) if isinstance(v, dt.datetime) else v
                for k, v in asdict(self).items()}  # type: ignore[call-overload]


@dataclass(frozen=True)
class LabelView(View):
    number: int
    name: str
    colour: str
    code: str


@dataclass(frozen=True)
class TaskView(View):
    id: int
    name: str
    modality: str
    k: int
    backend: str
    models: str
    embedder_id: str
    enabled: bool
    labels: list[LabelView]
    reference_set_version: int | None = None
    approved_slices: int = 0
    pending_candidates: int = 0
    min_similarity: float = 0.0


@dataclass(frozen=True)
class RouteView(View):
    id: int
    task: str
    modality: str | None
    body_part: str | None
    series_description: str | None
    calling_ae: str | None
    enabled: bool


@dataclass(frozen=True)
class SourceView(View):
    id: int
    ae_title: str
    ip: str | None
    series_quiet_seconds: int | None
    enabled: bool


@dataclass(frozen=True)
class DestinationView(View):
    id: int
    name: str
    ae_title: str | None
    host: str
    port: int
    tls: bool
    enabled: bool
    protocol: str = "c-store"
    url: str | None = None


@dataclass(frozen=True)
class CandidateView(View):
    id: int
    task: str
    origin: str
    state: str
    slices: int
    dice: dict[str, float]
    corrected_job_id: int | None
    note: str | None
    created_by: str
    created_at: dt.datetime
    decided_by: str | None
    reference_set_version: int | None


@dataclass(frozen=True)
class ReferenceSetView(View):
    id: int
    version: int
    approved_slices: int
    created_by: str
    created_at: dt.datetime
    note: str | None


@dataclass(frozen=True)
class SliceView(View):
    id: int
    state: str
    origin: str
    candidate_id: int | None
    reference_set_id: int | None
    slice_index: int
    height: int
    width: int
    labels_present: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class TokenView(View):
    id: int
    name: str
    role: str
    created_by: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked: bool


@dataclass(frozen=True)
class AuditView(View):
    id: int
    at: dt.datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]
