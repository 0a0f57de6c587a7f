"""Tasks and their labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from rafss_core.store.enums import SegmentationType
from rafss_core.store.models import Label, RoutingRule, Task


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
    min_similarity: float = 0.0,
) -> Task:
    """Create a task with its labels (``actor`` is kept for the signature; the use case
    audits)."""
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
        min_similarity=min_similarity,
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
    return task


def task_models(session: Session) -> dict[str, list[str]]:
    """``{task name: [backend, model ids of its spec...]}`` for ``rafss models list``."""
    rows = session.execute(sa.select(Task.name, Task.backend, Task.segmenter_id)).all()
    return {name: [backend, *(p.strip() for p in spec.split(",") if p.strip())]
            for name, backend, spec in rows}


def list_tasks(session: Session) -> list[Task]:
    """Every task with its labels, by name."""
    from sqlalchemy.orm import selectinload

    return list(session.execute(sa.select(Task).options(selectinload(Task.labels))
                                .order_by(Task.name)).scalars())


def task_by_name(session: Session, name: str) -> Task:
    task = session.execute(sa.select(Task).where(Task.name == name)).scalar_one_or_none()
    if task is None:
        raise LookupError(f"no task named {name!r}; create it with `rafss tasks create`")
    return task


def add_routing_rule(session: Session, *, task_id: int, modality: str | None = None,
                     body_part: str | None = None, series_description_regex: str | None = None,
                     calling_ae: str | None = None) -> RoutingRule:
    rule = RoutingRule(task_id=task_id, modality=modality, body_part=body_part,
                       series_description_regex=series_description_regex,
                       calling_ae=calling_ae)
    session.add(rule)
    session.flush()
    return rule


def list_routing_rules(session: Session) -> list[tuple[RoutingRule, str]]:
    return [(r, n) for r, n in session.execute(
        sa.select(RoutingRule, Task.name).join(Task, Task.id == RoutingRule.task_id)
        .order_by(RoutingRule.priority, RoutingRule.id)).all()]


def find_task(session: Session, name: str) -> Task | None:
    return session.execute(sa.select(Task).where(Task.name == name)).scalar_one_or_none()
