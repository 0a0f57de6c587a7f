"""Tasks and their labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from rafss_core.store.enums import SegmentationType
from rafss_core.store.models import Label, Task
from rafss_core.store.repositories.audit import audit


@dataclass(frozen=True)
class LabelSpec:
    """A label: number in the label map, name, code triplets and sRGB colour ``#rrggbb``."""

    number: int
    name: str
    category: tuple[str, str, str] = ("SCT", "123037004", "Anatomical Structure")
    type: tuple[str, str, str] = ("SCT", "91723000", "Anatomical Structure")
    colour_rgb: str = "#ff0000"


def create_task(
    session: Session,
    *,
    name: str,
    modality: str,
    labels: Sequence[LabelSpec],
    embedder_id: str,
    segmenter_id: str,
    actor: str,
    k: int = 4,
    backend: str = "sam2-memory",
    seg_type: SegmentationType = SegmentationType.BINARY,
    description: str | None = None,
) -> Task:
    """Create a task with its labels (audit-logged)."""
    if not labels:
        raise ValueError(f"task {name!r} needs at least one label")
    task = Task(
        name=name,
        modality=modality,
        k=k,
        embedder_id=embedder_id,
        segmenter_id=segmenter_id,
        backend=backend,
        seg_type=seg_type,
        description=description,
        labels=[
            Label(
                number=spec.number,
                name=spec.name,
                category_scheme=spec.category[0],
                category_value=spec.category[1],
                category_meaning=spec.category[2],
                type_scheme=spec.type[0],
                type_value=spec.type[1],
                type_meaning=spec.type[2],
                colour_rgb=spec.colour_rgb.lower(),
            )
            for spec in labels
        ],
    )
    session.add(task)
    session.flush()
    audit(
        session,
        actor=actor,
        action="task.create",
        object_type="task",
        object_id=task.id,
        details={"name": name, "modality": modality, "labels": [s.number for s in labels]},
    )
    return task


def task_models(session: Session) -> dict[str, list[str]]:
    """``{task name: [backend, model ids of its spec...]}`` for ``rafss models list``."""
    rows = session.execute(sa.select(Task.name, Task.backend, Task.segmenter_id)).all()
    return {name: [backend, *(p.strip() for p in spec.split(",") if p.strip())]
            for name, backend, spec in rows}
