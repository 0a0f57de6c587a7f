"""SQLAlchemy 2 models: the RAFSS schema.

Conventions:

- surrogate ``bigint`` identity keys; DICOM UIDs are unique natural keys beside them;
- states are ``text`` + ``CHECK`` (see :mod:`rafss_core.store.enums`);
- timestamps are ``timestamptz`` filled by the server (``now()``);
- no PHI: no patient names, IDs or birth dates are stored anywhere, only UIDs and technical
  attributes (modality, body part, SeriesDescription, geometry).

Embeddings (``reference_slices.embedding``, ``slice_embeddings.embedding``) are *untyped*
``vector`` columns with a generated ``embedding_dim`` column. Embedding sizes depend on the
embedder (DINOv2 ViT-S/B/L/g: 384/768/1024/1536; tiny test models: 64), and one deployment may
hold references from several embedders while it migrates. A pgvector HNSW index needs a fixed
dimension, so instead of padding everything to 1536 (wasting 2-4x memory and distorting nothing
but costing I/O on every distance) we keep the column untyped and create one *partial expression*
HNSW index per dimension on demand::

    CREATE INDEX ix_reference_slices_embedding_hnsw_d768 ON reference_slices
      USING hnsw ((embedding::vector(768)) vector_cosine_ops) WHERE embedding_dim = 768

(see :func:`rafss_core.store.vector.ensure_vector_index`). Queries repeat the same cast and
predicate, so the planner can use the index.

Reference images and masks are stored in the row as compressed ``.npz`` bytes (``bytea``), see
:mod:`rafss_core.store.arrays`: reference sets are small (a few studies per task), and keeping
them in the database makes approval transactional and backups complete.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from rafss_core.store.enums import (
    CandidateState,
    DeliveryStatus,
    InstanceState,
    JobKind,
    JobState,
    ReferenceOrigin,
    ReferenceState,
    Role,
    SegmentationType,
    SeriesState,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UID = sa.String(64)  # DICOM UIDs are at most 64 characters
AE_TITLE = sa.String(16)  # DICOM AE titles are at most 16 characters


def state_type(enum_cls: type[StrEnum], name: str) -> sa.Enum:
    """A ``varchar`` + ``CHECK`` column type storing the enum *values*."""
    return sa.Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


def _now() -> sa.TextClause:
    return sa.text("now()")


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Timestamped:
    created_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now()
    )


# --- configuration: tasks, routing, peers ------------------------------------------------------


class Task(Timestamped, Base):
    """A segmentation task: what to segment, for which modality, with which models."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    modality: Mapped[str] = mapped_column(sa.String(16))
    k: Mapped[int] = mapped_column(sa.SmallInteger, server_default="4")
    # slices whose best retrieval similarity is below this are flagged and left unsegmented
    min_similarity: Mapped[float] = mapped_column(sa.Float, server_default="0")
    embedder_id: Mapped[str] = mapped_column(sa.String(128))
    segmenter_id: Mapped[str] = mapped_column(sa.String(128))
    backend: Mapped[str] = mapped_column(sa.String(32), server_default="sam2-memory")
    seg_type: Mapped[SegmentationType] = mapped_column(
        state_type(SegmentationType, "seg_type"), server_default=SegmentationType.BINARY.value
    )
    enabled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.true())

    labels: Mapped[list[Label]] = relationship(
        back_populates="task", cascade="all, delete-orphan", order_by="Label.number"
    )

    __table_args__ = (sa.CheckConstraint("k >= 1 AND k <= 64", name="k_range"),)


class Label(Base):
    """One label of a task: its number in the label map, codes and display colour."""

    __tablename__ = "task_labels"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    task_id: Mapped[int] = mapped_column(sa.ForeignKey("tasks.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(sa.SmallInteger)
    name: Mapped[str] = mapped_column(sa.String(64))
    # SNOMED CT (or other scheme) code triplets for SegmentedPropertyCategory/TypeCodeSequence
    category_scheme: Mapped[str] = mapped_column(sa.String(16), server_default="SCT")
    category_value: Mapped[str] = mapped_column(sa.String(64))
    category_meaning: Mapped[str] = mapped_column(sa.String(64))
    type_scheme: Mapped[str] = mapped_column(sa.String(16), server_default="SCT")
    type_value: Mapped[str] = mapped_column(sa.String(64))
    type_meaning: Mapped[str] = mapped_column(sa.String(64))
    # display colour as sRGB "#rrggbb"; the SEG writer converts it to DICOM CIELab
    colour_rgb: Mapped[str] = mapped_column(sa.String(7), server_default="#ff0000")

    task: Mapped[Task] = relationship(back_populates="labels")

    __table_args__ = (
        sa.UniqueConstraint("task_id", "number"),
        sa.UniqueConstraint("task_id", "name"),
        sa.CheckConstraint("number >= 1 AND number <= 255", name="number_range"),
        sa.CheckConstraint("colour_rgb ~ '^#[0-9a-f]{6}$'", name="colour_rgb_hex"),
    )


class RoutingRule(Timestamped, Base):
    """Which task applies to a closed series. NULL criteria match anything."""

    __tablename__ = "routing_rules"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    task_id: Mapped[int] = mapped_column(sa.ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    modality: Mapped[str | None] = mapped_column(sa.String(16))
    body_part: Mapped[str | None] = mapped_column(sa.String(64))
    series_description_regex: Mapped[str | None] = mapped_column(sa.Text)
    calling_ae: Mapped[str | None] = mapped_column(AE_TITLE)
    priority: Mapped[int] = mapped_column(sa.Integer, server_default="100")
    enabled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.true())


class Destination(Timestamped, Base):
    """A peer that receives the results: a C-STORE SCP (``ae_title``, ``host``, ``port``) or a
    DICOMweb server taking STOW-RS (``url``; ``host`` and ``port`` are parsed from it)."""

    __tablename__ = "destinations"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    protocol: Mapped[str] = mapped_column(sa.String(16), server_default="c-store")
    url: Mapped[str | None] = mapped_column(sa.Text)
    ae_title: Mapped[str | None] = mapped_column(AE_TITLE)
    host: Mapped[str] = mapped_column(sa.String(255))
    port: Mapped[int] = mapped_column(sa.Integer)
    tls_enabled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    # paths to PEM files, never the key material itself
    tls_ca_file: Mapped[str | None] = mapped_column(sa.Text)
    tls_cert_file: Mapped[str | None] = mapped_column(sa.Text)
    tls_key_file: Mapped[str | None] = mapped_column(sa.Text)
    tls_verify_hostname: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.true())
    enabled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.true())

    __table_args__ = (
        sa.CheckConstraint("port >= 1 AND port <= 65535", name="port_range"),
        sa.CheckConstraint("protocol IN ('c-store', 'stow-rs')", name="protocol"),
        sa.CheckConstraint("(protocol = 'c-store' AND ae_title IS NOT NULL) OR "
                           "(protocol = 'stow-rs' AND url IS NOT NULL)",
                           name="protocol_address"),
    )


class AllowedSource(Timestamped, Base):
    """AE allow-list entry; ``ip`` NULL allows the AE title from any address."""

    __tablename__ = "allowed_sources"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    ae_title: Mapped[str] = mapped_column(AE_TITLE)
    ip: Mapped[str | None] = mapped_column(INET)
    description: Mapped[str | None] = mapped_column(sa.Text)
    # the series assembler's quiet period for this source; NULL uses the global default
    series_quiet_seconds: Mapped[int | None] = mapped_column(sa.Integer)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.true())

    __table_args__ = (sa.UniqueConstraint("ae_title", "ip", postgresql_nulls_not_distinct=True),)


# --- references -------------------------------------------------------------------------------


class ReferenceSet(Timestamped, Base):
    """A versioned set of reference slices for one task."""

    __tablename__ = "reference_sets"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    task_id: Mapped[int] = mapped_column(sa.ForeignKey("tasks.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(sa.Integer)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    note: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.UniqueConstraint("task_id", "version"),
        # target of the composite FK from reference_slices, which keeps task_id consistent
        sa.UniqueConstraint("id", "task_id"),
        sa.CheckConstraint("version >= 1", name="version_positive"),
    )


class ReferenceSlice(Timestamped, Base):
    """One expert-annotated 2D slice with its embedding and curation state.

    ``task_id`` and ``modality`` are denormalised onto the row so that the vector search filters
    on the table it scans; the composite foreign key keeps ``task_id`` equal to the set's task.
    """

    __tablename__ = "reference_slices"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    # the reference-set version the slice was approved into; NULL while it is a candidate
    reference_set_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    # the import or correction that brought it in (reviewed as one batch)
    candidate_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("reference_candidates.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int] = mapped_column(sa.BigInteger)
    modality: Mapped[str] = mapped_column(sa.String(16))
    origin: Mapped[ReferenceOrigin] = mapped_column(state_type(ReferenceOrigin, "origin"))
    # provenance
    study_instance_uid: Mapped[str] = mapped_column(UID)
    series_instance_uid: Mapped[str] = mapped_column(UID)
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    seg_sop_instance_uid: Mapped[str | None] = mapped_column(UID)
    slice_index: Mapped[int] = mapped_column(sa.Integer)
    # storage: compressed npz bytes (see rafss_core.store.arrays)
    image_npz: Mapped[bytes] = mapped_column(sa.LargeBinary)
    mask_npz: Mapped[bytes] = mapped_column(sa.LargeBinary)
    height: Mapped[int] = mapped_column(sa.Integer)
    width: Mapped[int] = mapped_column(sa.Integer)
    # embedding: untyped vector + generated dimension (see module docstring)
    embedder_id: Mapped[str | None] = mapped_column(sa.String(128))
    embedding: Mapped[Any | None] = mapped_column(Vector())
    embedding_dim: Mapped[int | None] = mapped_column(
        sa.SmallInteger, sa.Computed("vector_dims(embedding)", persisted=True)
    )
    # curation
    state: Mapped[ReferenceState] = mapped_column(
        state_type(ReferenceState, "state"), server_default=ReferenceState.CANDIDATE.value
    )
    state_changed_by: Mapped[str] = mapped_column(sa.String(128))
    state_changed_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now()
    )

    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["reference_set_id", "task_id"],
            ["reference_sets.id", "reference_sets.task_id"],
            ondelete="CASCADE",
            name="fk_reference_slices_reference_set",
        ),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.UniqueConstraint("reference_set_id", "sop_instance_uid", "slice_index"),
        sa.CheckConstraint(
            "(embedding IS NULL) = (embedder_id IS NULL)", name="embedding_has_embedder"
        ),
        sa.CheckConstraint(
            "state <> 'approved' OR embedding IS NOT NULL", name="approved_has_embedding"
        ),
        sa.Index("ix_reference_slices_task_id_state", "task_id", "state"),
        # exact-scan path of the vector search: the approved rows of one (task, modality, embedder)
        sa.Index(
            "ix_reference_slices_approved_lookup",
            "task_id",
            "modality",
            "embedder_id",
            postgresql_where=sa.text("state = 'approved'"),
        ),
    )


class ReferenceCandidate(Timestamped, Base):
    """One batch of candidate reference slices awaiting review: an import (files, upload, a
    received study + SEG) or a radiologist's correction of a RAFSS SEG.

    For a correction, ``dice`` holds the Dice of the corrected SEG against RAFSS's SEG per
    label (``{"LV": 0.91, ...}``): how much the radiologist changed. Approval moves every slice
    into a new reference-set version (``reference_set_id``); rejection revokes them.
    """

    __tablename__ = "reference_candidates"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    task_id: Mapped[int] = mapped_column(sa.ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    origin: Mapped[ReferenceOrigin] = mapped_column(state_type(ReferenceOrigin, "origin"))
    state: Mapped[CandidateState] = mapped_column(
        state_type(CandidateState, "state"), server_default=CandidateState.PENDING.value)
    # the RAFSS job whose SEG a correction corrects
    corrected_job_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("jobs.id", ondelete="SET NULL"))
    # de-identified UIDs (see rafss_core.deid): the bank keeps no original identifier
    study_instance_uid: Mapped[str | None] = mapped_column(UID)
    series_instance_uid: Mapped[str | None] = mapped_column(UID)
    slices: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    dice: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sa.text("'{}'::jsonb"))
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    decided_by: Mapped[str | None] = mapped_column(sa.String(128))
    decided_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    reference_set_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("reference_sets.id", ondelete="SET NULL"))


class ApiToken(Base):
    """A bearer token for the API. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    role: Mapped[Role] = mapped_column(state_type(Role, "role"))
    token_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))


# --- received data ------------------------------------------------------------------------------


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    first_received_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now()
    )


class Series(Base):
    """A received series; ``state`` and ``last_instance_at`` drive the series assembler."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    study_id: Mapped[int] = mapped_column(
        sa.ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    series_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    modality: Mapped[str | None] = mapped_column(sa.String(16))
    body_part: Mapped[str | None] = mapped_column(sa.String(64))
    series_description: Mapped[str | None] = mapped_column(sa.String(128))
    calling_ae: Mapped[str | None] = mapped_column(AE_TITLE)
    state: Mapped[SeriesState] = mapped_column(
        state_type(SeriesState, "state"), server_default=SeriesState.OPEN.value
    )
    first_instance_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now()
    )
    last_instance_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now()
    )
    closed_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        # the assembler polls "open series quiet since T"
        sa.Index(
            "ix_series_open_last_instance_at",
            "last_instance_at",
            postgresql_where=sa.text("state = 'open'"),
        ),
    )


class Instance(Base):
    """A received SOP instance: where its file is in the spool, and its geometry."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    series_id: Mapped[int] = mapped_column(
        sa.ForeignKey("series.id", ondelete="CASCADE"), index=True
    )
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    transfer_syntax_uid: Mapped[str | None] = mapped_column(UID)
    instance_number: Mapped[int | None] = mapped_column(sa.Integer)
    calling_ae: Mapped[str | None] = mapped_column(AE_TITLE)
    calling_ip: Mapped[str | None] = mapped_column(INET)
    # geometry (patient coordinates, mm)
    rows: Mapped[int | None] = mapped_column(sa.Integer)
    columns: Mapped[int | None] = mapped_column(sa.Integer)
    number_of_frames: Mapped[int | None] = mapped_column(sa.Integer)
    image_position_patient: Mapped[list[float] | None] = mapped_column(ARRAY(sa.Float))
    image_orientation_patient: Mapped[list[float] | None] = mapped_column(ARRAY(sa.Float))
    pixel_spacing: Mapped[list[float] | None] = mapped_column(ARRAY(sa.Float))
    slice_thickness: Mapped[float | None] = mapped_column(sa.Float)
    # storage
    spool_path: Mapped[str] = mapped_column(sa.Text)
    # set when retention deleted the spool file; the row stays (UIDs, sender, times, geometry:
    # what audits need, and no PHI is stored in rows anyway)
    purged_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    received_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now()
    )
    state: Mapped[InstanceState] = mapped_column(
        state_type(InstanceState, "state"), server_default=InstanceState.RECEIVED.value
    )

    __table_args__ = (
        sa.CheckConstraint(
            "image_position_patient IS NULL OR cardinality(image_position_patient) = 3",
            name="position_3",
        ),
        sa.CheckConstraint(
            "image_orientation_patient IS NULL OR cardinality(image_orientation_patient) = 6",
            name="orientation_6",
        ),
        sa.CheckConstraint(
            "pixel_spacing IS NULL OR cardinality(pixel_spacing) = 2", name="spacing_2"
        ),
    )


class SliceEmbedding(Timestamped, Base):
    """Cached embedding of one target slice (a query of the vector search, never indexed)."""

    __tablename__ = "slice_embeddings"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    series_id: Mapped[int] = mapped_column(sa.ForeignKey("series.id", ondelete="CASCADE"))
    slice_index: Mapped[int] = mapped_column(sa.Integer)
    embedder_id: Mapped[str] = mapped_column(sa.String(128))
    embedding: Mapped[Any] = mapped_column(Vector())
    embedding_dim: Mapped[int] = mapped_column(
        sa.SmallInteger, sa.Computed("vector_dims(embedding)", persisted=True)
    )

    __table_args__ = (sa.UniqueConstraint("series_id", "embedder_id", "slice_index"),)


# --- work: jobs, results, deliveries ------------------------------------------------------------


class Job(Base):
    """A unit of work; the row is the outbox (the dispatcher enqueues queued rows on Celery)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    kind: Mapped[JobKind] = mapped_column(state_type(JobKind, "kind"))
    idempotency_key: Mapped[str] = mapped_column(sa.String(128), unique=True)
    series_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("series.id", ondelete="SET NULL"), index=True
    )
    task_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tasks.id", ondelete="SET NULL"))
    reference_set_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("reference_sets.id", ondelete="SET NULL")
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sa.text("'{}'::jsonb"))
    state: Mapped[JobState] = mapped_column(
        state_type(JobState, "state"), server_default=JobState.QUEUED.value
    )
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    max_attempts: Mapped[int] = mapped_column(sa.Integer, server_default="5")
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now()
    )
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    started_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    claimed_by: Mapped[str | None] = mapped_column(sa.String(128))  # host:pid of the worker
    finished_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        # the dispatcher's queries: queued jobs, and stale running ones
        sa.Index("ix_jobs_state_updated_at", "state", "updated_at"),
    )


class Result(Base):
    """The DICOM-SEG a job produced. Its UID is deterministic for the job key."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    seg_sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    seg_series_instance_uid: Mapped[str] = mapped_column(UID)
    path: Mapped[str] = mapped_column(sa.Text)
    # the TID 1500 volume report delivered with the SEG
    report_path: Mapped[str | None] = mapped_column(sa.Text)
    purged_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sa.text("'{}'::jsonb"))
    created_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now()
    )


class Delivery(Base):
    """Sending one result to one destination; every attempt bumps ``attempts``."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    result_id: Mapped[int] = mapped_column(sa.ForeignKey("results.id", ondelete="CASCADE"))
    destination_id: Mapped[int] = mapped_column(
        sa.ForeignKey("destinations.id", ondelete="CASCADE")
    )
    status: Mapped[DeliveryStatus] = mapped_column(
        state_type(DeliveryStatus, "status"), server_default=DeliveryStatus.PENDING.value
    )
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    # protocol-neutral: the DIMSE status of a C-STORE, the HTTP status (or STOW-RS
    # FailureReason) of a STOW-RS; NULL when nothing answered
    last_status: Mapped[int | None] = mapped_column(sa.Integer)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=_now()
    )
    delivered_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.UniqueConstraint("result_id", "destination_id"),
        sa.CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        sa.Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )


class AuditEntry(Base):
    """Who did what to which object, and when. Details never carry PHI."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_now())
    actor: Mapped[str] = mapped_column(sa.String(128))
    action: Mapped[str] = mapped_column(sa.String(64))
    object_type: Mapped[str] = mapped_column(sa.String(64))
    object_id: Mapped[str] = mapped_column(sa.String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sa.text("'{}'::jsonb"))

    __table_args__ = (
        sa.Index("ix_audit_log_object", "object_type", "object_id"),
        sa.Index("ix_audit_log_at", "at"),
    )
