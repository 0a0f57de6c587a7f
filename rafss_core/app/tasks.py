"""Use cases: tasks and routing rules."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from rafss_core.app.context import App
from rafss_core.app.errors import ConflictError
from rafss_core.app.views import LabelView, RouteView, TaskView
from rafss_core.store.models import Task
from rafss_core.store.repositories import audit
from rafss_core.store.repositories.references import latest_reference_set, reference_counts
from rafss_core.store.repositories.tasks import (
    LabelSpec,
    add_routing_rule,
    find_task,
    list_routing_rules,
    task_by_name,
)
from rafss_core.store.repositories.tasks import create_task as _create_task
from rafss_core.store.repositories.tasks import list_tasks as _list_tasks

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def parse_label(text: str, index: int) -> LabelSpec:
    """A label from ``NUMBER:NAME`` or ``NUMBER:NAME:SCHEME:CODE`` (the code's meaning is the
    name). Without a code, a well-known name gets its SNOMED CT type and any other name the
    generic one (:mod:`rafss_core.dicom.labels`); ``index`` picks the palette colour.

    Raises:
        ValueError: ``text`` is neither form.
    """
    from rafss_core.dicom.labels import ANATOMY, GENERIC_TYPE, KNOWN_TYPES, PALETTE

    parts = text.split(":")
    if len(parts) not in (2, 4) or not parts[0].isdigit() or not parts[1]:
        raise ValueError(f"label {text!r}: use NUMBER:NAME or NUMBER:NAME:SCHEME:CODE")
    number, name = int(parts[0]), parts[1]
    kind = KNOWN_TYPES.get(name.upper(), GENERIC_TYPE)
    if len(parts) == 4:
        kind = (parts[2], parts[3], name)
    return LabelSpec(number, name, category=ANATOMY, type=kind,
                     colour_rgb=PALETTE[index % len(PALETTE)])


def new_task(session: Session, name: str, modality: str, labels: Sequence[str],
             models: str | None, models_dir: Path, k: int = 4, actor: str = "cli",
             backend: str | None = None, min_similarity: float = 0.0) -> Task:
    """Create a task in ``session`` (no checks, no audit row: see :func:`create_task`), its
    labels parsed by :func:`parse_label`; ``backend`` None or ``auto`` picks it from
    ``models`` or from what is imported (see :func:`rafss_core.segmentation.backends.choose`).
    """
    from rafss_core.segmentation.backends import choose, segmenter_ids

    specs = [parse_label(text, i) for i, text in enumerate(labels)]
    name_, models = choose(backend, models, models_dir)
    ids = segmenter_ids(name_, models, models_dir)
    return _create_task(session, name=name, modality=modality.upper(), labels=specs,
                        embedder_id=ids.embedder_id, segmenter_id=models, backend=name_,
                        k=k, actor=actor, min_similarity=min_similarity)


def _view(session: Session, task: Task) -> TaskView:
    ref_set = latest_reference_set(session, task.id)
    approved, pending = reference_counts(session, task.id)
    return TaskView(
        id=task.id, name=task.name, modality=task.modality, k=task.k, backend=task.backend,
        models=task.segmenter_id, embedder_id=task.embedder_id, enabled=task.enabled,
        labels=[LabelView(lab.number, lab.name, lab.colour_rgb,
                          f"{lab.type_scheme}:{lab.type_value}") for lab in task.labels],
        reference_set_version=ref_set.version if ref_set else None,
        approved_slices=int(approved), pending_candidates=int(pending),
        min_similarity=float(task.min_similarity))


def create_task(app: App, actor: str, *, name: str, modality: str, labels: Sequence[str],
                k: int | None = None, backend: str | None = None,
                models: str | None = None, min_similarity: float = 0.0) -> TaskView:
    """Create a task with its labels (``NUMBER:NAME[:SCHEME:CODE]``); backend and models are
    those given, else the settings'; ``auto`` chooses from what is imported. Slices whose best
    retrieval similarity is below ``min_similarity`` are flagged and left unsegmented.

    Raises:
        ValueError: a bad name, label, modality or k.
        ConflictError: a task with that name exists.
    """
    if not NAME.fullmatch(name):
        raise ValueError(f"task name {name!r}: use 1-128 letters, digits, '.', '_' or '-'")
    if not re.fullmatch(r"[A-Za-z]{1,16}", modality):
        raise ValueError(f"modality {modality!r}: use a DICOM modality such as MR or CT")
    k = app.settings.k if k is None else k
    if not 1 <= k <= 64:
        raise ValueError(f"k={k}: references per target slice must be 1 to 64")
    if not -1.0 <= min_similarity <= 1.0:
        raise ValueError(f"min_similarity={min_similarity}: a cosine similarity, -1 to 1")
    with app.sessions.begin() as s:
        if find_task(s, name) is not None:
            raise ConflictError(f"a task named {name!r} already exists; choose another name")
        task = new_task(s, name, modality, labels, models or app.settings.models,
                        app.settings.models_dir, k=k,
                        backend=backend or app.settings.backend, actor=actor,
                        min_similarity=min_similarity)
        audit(s, actor=actor, action="task.create", object_type="task", object_id=task.id,
              details={"name": name, "modality": task.modality, "backend": task.backend,
                       "models": task.segmenter_id, "labels": [lab.number
                                                               for lab in task.labels]})
        return _view(s, task)


def list_tasks(app: App) -> list[TaskView]:
    with app.sessions() as s:
        return [_view(s, t) for t in _list_tasks(s)]


def get_task(app: App, name: str) -> TaskView:
    with app.sessions() as s:
        return _view(s, task_by_name(s, name))


def add_route(app: App, actor: str, *, task: str, modality: str | None = None,
              body_part: str | None = None, series_description: str | None = None,
              calling_ae: str | None = None) -> RouteView:
    """Route matching series to a task (unset criteria match anything).

    Raises:
        LookupError: no such task.
        ValueError: ``series_description`` is not a valid regular expression.
    """
    if series_description:
        try:
            re.compile(series_description)
        except re.error as exc:
            raise ValueError(f"series description is not a valid regex: {exc}") from exc
    with app.sessions.begin() as s:
        rule = add_routing_rule(s, task_id=task_by_name(s, task).id, modality=modality,
                                body_part=body_part,
                                series_description_regex=series_description,
                                calling_ae=calling_ae)
        audit(s, actor=actor, action="route.add", object_type="routing_rule",
              object_id=rule.id, details={"task": task, "modality": modality,
                                          "body_part": body_part, "calling_ae": calling_ae})
        return RouteView(rule.id, task, modality, body_part, series_description, calling_ae,
                         True)


def list_routes(app: App) -> list[RouteView]:
    with app.sessions() as s:
        return [RouteView(r.id, name, r.modality, r.body_part, r.series_description_regex,
                          r.calling_ae, r.enabled) for r, name in list_routing_rules(s)]
