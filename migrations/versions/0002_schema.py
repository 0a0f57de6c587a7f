"""Schema: configuration, references, received data, jobs, deliveries, audit log.

Embeddings are untyped ``vector`` columns; HNSW indexes per dimension are created on demand
(rafss_core.store.vector.ensure_vector_index) and dropped with their table.

Revision ID: 0002_schema
Revises: 0001_vector_extension
Create Date: 2025-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision: str = "0002_schema"
down_revision: str | None = "0001_vector_extension"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "allowed_sources",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("ip", postgresql.INET(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("series_quiet_seconds", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allowed_sources")),
        sa.UniqueConstraint(
            "ae_title",
            "ip",
            name=op.f("uq_allowed_sources_ae_title_ip"),
            postgresql_nulls_not_distinct=True,
        ),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"], unique=False)
    op.create_index("ix_audit_log_object", "audit_log", ["object_type", "object_id"], unique=False)
    op.create_table(
        "destinations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("tls_enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("tls_ca_file", sa.Text(), nullable=True),
        sa.Column("tls_cert_file", sa.Text(), nullable=True),
        sa.Column("tls_key_file", sa.Text(), nullable=True),
        sa.Column(
            "tls_verify_hostname", sa.Boolean(), server_default=sa.text("true"), nullable=False
        ),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("port >= 1 AND port <= 65535", name=op.f("ck_destinations_port_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_destinations")),
        sa.UniqueConstraint("name", name=op.f("uq_destinations_name")),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column(
            "first_received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("study_instance_uid", name=op.f("uq_studies_study_instance_uid")),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("k", sa.SmallInteger(), server_default="4", nullable=False),
        sa.Column("embedder_id", sa.String(length=128), nullable=False),
        sa.Column("segmenter_id", sa.String(length=128), nullable=False),
        sa.Column("backend", sa.String(length=32), server_default="sam2", nullable=False),
        sa.Column("seg_type", sa.String(length=32), server_default="BINARY", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("k >= 1 AND k <= 64", name=op.f("ck_tasks_k_range")),
        sa.CheckConstraint("seg_type IN ('BINARY', 'LABELMAP')", name=op.f("ck_tasks_seg_type")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("name", name=op.f("uq_tasks_name")),
    )
    op.create_table(
        "reference_sets",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_reference_sets_version_positive")),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_reference_sets_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_sets")),
        sa.UniqueConstraint("id", "task_id", name=op.f("uq_reference_sets_id_task_id")),
        sa.UniqueConstraint("task_id", "version", name=op.f("uq_reference_sets_task_id_version")),
    )
    op.create_table(
        "routing_rules",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("body_part", sa.String(length=64), nullable=True),
        sa.Column("series_description_regex", sa.Text(), nullable=True),
        sa.Column("calling_ae", sa.String(length=16), nullable=True),
        sa.Column("priority", sa.Integer(), server_default="100", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_routing_rules_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_rules")),
    )
    op.create_index(op.f("ix_routing_rules_task_id"), "routing_rules", ["task_id"], unique=False)
    op.create_table(
        "series",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("study_id", sa.BigInteger(), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("body_part", sa.String(length=64), nullable=True),
        sa.Column("series_description", sa.String(length=128), nullable=True),
        sa.Column("calling_ae", sa.String(length=16), nullable=True),
        sa.Column("state", sa.String(length=32), server_default="open", nullable=False),
        sa.Column(
            "first_instance_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "last_instance_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_series_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("state IN ('open', 'closed', 'routed')", name=op.f("ck_series_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.UniqueConstraint("series_instance_uid", name=op.f("uq_series_series_instance_uid")),
    )
    op.create_index(
        "ix_series_open_last_instance_at",
        "series",
        ["last_instance_at"],
        unique=False,
        postgresql_where=sa.text("state = 'open'"),
    )
    op.create_index(op.f("ix_series_study_id"), "series", ["study_id"], unique=False)
    op.create_table(
        "task_labels",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("category_scheme", sa.String(length=16), server_default="SCT", nullable=False),
        sa.Column("category_value", sa.String(length=64), nullable=False),
        sa.Column("category_meaning", sa.String(length=64), nullable=False),
        sa.Column("type_scheme", sa.String(length=16), server_default="SCT", nullable=False),
        sa.Column("type_value", sa.String(length=64), nullable=False),
        sa.Column("type_meaning", sa.String(length=64), nullable=False),
        sa.Column("colour_rgb", sa.String(length=7), server_default="#ff0000", nullable=False),
        sa.CheckConstraint(
            "colour_rgb ~ '^#[0-9a-f]{6}$'", name=op.f("ck_task_labels_colour_rgb_hex")
        ),
        sa.CheckConstraint(
            "number >= 1 AND number <= 255", name=op.f("ck_task_labels_number_range")
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_labels_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_labels")),
        sa.UniqueConstraint("task_id", "name", name=op.f("uq_task_labels_task_id_name")),
        sa.UniqueConstraint("task_id", "number", name=op.f("uq_task_labels_task_id_number")),
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("series_id", sa.BigInteger(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=True),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("calling_ae", sa.String(length=16), nullable=True),
        sa.Column("calling_ip", postgresql.INET(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("number_of_frames", sa.Integer(), nullable=True),
        sa.Column("image_position_patient", postgresql.ARRAY(sa.Float()), nullable=True),
        sa.Column("image_orientation_patient", postgresql.ARRAY(sa.Float()), nullable=True),
        sa.Column("pixel_spacing", postgresql.ARRAY(sa.Float()), nullable=True),
        sa.Column("slice_thickness", sa.Float(), nullable=True),
        sa.Column("spool_path", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=32), server_default="received", nullable=False),
        sa.CheckConstraint(
            "image_orientation_patient IS NULL OR cardinality(image_orientation_patient) = 6",
            name=op.f("ck_instances_orientation_6"),
        ),
        sa.CheckConstraint(
            "image_position_patient IS NULL OR cardinality(image_position_patient) = 3",
            name=op.f("ck_instances_position_3"),
        ),
        sa.CheckConstraint(
            "pixel_spacing IS NULL OR cardinality(pixel_spacing) = 2",
            name=op.f("ck_instances_spacing_2"),
        ),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["series.id"],
            name=op.f("fk_instances_series_id_series"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "state IN ('received', 'processed', 'invalid')", name=op.f("ck_instances_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instances")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_instances_sop_instance_uid")),
    )
    op.create_index(op.f("ix_instances_series_id"), "instances", ["series_id"], unique=False)
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("series_id", sa.BigInteger(), nullable=True),
        sa.Column("task_id", sa.BigInteger(), nullable=True),
        sa.Column("reference_set_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=32), server_default="queued", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="5", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_jobs_attempts_non_negative")),
        sa.ForeignKeyConstraint(
            ["reference_set_id"],
            ["reference_sets.id"],
            name=op.f("fk_jobs_reference_set_id_reference_sets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name=op.f("fk_jobs_series_id_series"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_jobs_task_id_tasks"), ondelete="SET NULL"
        ),
        sa.CheckConstraint(
            "kind IN ('segment', 'deliver', 'embed_references')", name=op.f("ck_jobs_kind")
        ),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'dead')",
            name=op.f("ck_jobs_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_jobs_idempotency_key")),
    )
    op.create_index(op.f("ix_jobs_series_id"), "jobs", ["series_id"], unique=False)
    op.create_index("ix_jobs_state_updated_at", "jobs", ["state", "updated_at"], unique=False)
    op.create_table(
        "reference_slices",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("reference_set_id", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("origin", sa.String(length=32), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("seg_sop_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("slice_index", sa.Integer(), nullable=False),
        sa.Column("image_npz", sa.LargeBinary(), nullable=False),
        sa.Column("mask_npz", sa.LargeBinary(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("embedder_id", sa.String(length=128), nullable=True),
        sa.Column("embedding", Vector(), nullable=True),
        sa.Column(
            "embedding_dim",
            sa.SmallInteger(),
            sa.Computed("vector_dims(embedding)", persisted=True),
            nullable=True,
        ),
        sa.Column("state", sa.String(length=32), server_default="candidate", nullable=False),
        sa.Column("state_changed_by", sa.String(length=128), nullable=False),
        sa.Column(
            "state_changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state <> 'approved' OR embedding IS NOT NULL",
            name=op.f("ck_reference_slices_approved_has_embedding"),
        ),
        sa.CheckConstraint(
            "(embedding IS NULL) = (embedder_id IS NULL)",
            name=op.f("ck_reference_slices_embedding_has_embedder"),
        ),
        sa.ForeignKeyConstraint(
            ["reference_set_id", "task_id"],
            ["reference_sets.id", "reference_sets.task_id"],
            name="fk_reference_slices_reference_set",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_reference_slices_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "origin IN ('import', 'upload', 'feedback')", name=op.f("ck_reference_slices_origin")
        ),
        sa.CheckConstraint(
            "state IN ('candidate', 'approved', 'revoked')", name=op.f("ck_reference_slices_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_slices")),
        sa.UniqueConstraint(
            "reference_set_id",
            "sop_instance_uid",
            "slice_index",
            name=op.f("uq_reference_slices_reference_set_id_sop_instance_uid_slice_index"),
        ),
    )
    op.create_index(
        "ix_reference_slices_approved_lookup",
        "reference_slices",
        ["task_id", "modality", "embedder_id"],
        unique=False,
        postgresql_where=sa.text("state = 'approved'"),
    )
    op.create_index(
        "ix_reference_slices_task_id_state", "reference_slices", ["task_id", "state"], unique=False
    )
    op.create_table(
        "slice_embeddings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("series_id", sa.BigInteger(), nullable=False),
        sa.Column("slice_index", sa.Integer(), nullable=False),
        sa.Column("embedder_id", sa.String(length=128), nullable=False),
        sa.Column("embedding", Vector(), nullable=False),
        sa.Column(
            "embedding_dim",
            sa.SmallInteger(),
            sa.Computed("vector_dims(embedding)", persisted=True),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["series.id"],
            name=op.f("fk_slice_embeddings_series_id_series"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slice_embeddings")),
        sa.UniqueConstraint(
            "series_id",
            "embedder_id",
            "slice_index",
            name=op.f("uq_slice_embeddings_series_id_embedder_id_slice_index"),
        ),
    )
    op.create_table(
        "results",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("seg_sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("seg_series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_results_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results")),
        sa.UniqueConstraint("job_id", name=op.f("uq_results_job_id")),
        sa.UniqueConstraint("seg_sop_instance_uid", name=op.f("uq_results_seg_sop_instance_uid")),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("result_id", sa.BigInteger(), nullable=False),
        sa.Column("destination_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=32), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_dimse_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_deliveries_attempts_non_negative")),
        sa.ForeignKeyConstraint(
            ["destination_id"],
            ["destinations.id"],
            name=op.f("fk_deliveries_destination_id_destinations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["results.id"],
            name=op.f("fk_deliveries_result_id_results"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed', 'dead')",
            name=op.f("ck_deliveries_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "result_id", "destination_id", name=op.f("uq_deliveries_result_id_destination_id")
        ),
    )
    op.create_index(
        "ix_deliveries_status_next_attempt_at",
        "deliveries",
        ["status", "next_attempt_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_next_attempt_at", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_table("results")
    op.drop_table("slice_embeddings")
    op.drop_index("ix_reference_slices_task_id_state", table_name="reference_slices")
    op.drop_index(
        "ix_reference_slices_approved_lookup",
        table_name="reference_slices",
        postgresql_where=sa.text("state = 'approved'"),
    )
    op.drop_table("reference_slices")
    op.drop_index("ix_jobs_state_updated_at", table_name="jobs")
    op.drop_index(op.f("ix_jobs_series_id"), table_name="jobs")
    op.drop_table("jobs")
    op.drop_index(op.f("ix_instances_series_id"), table_name="instances")
    op.drop_table("instances")
    op.drop_table("task_labels")
    op.drop_index(op.f("ix_series_study_id"), table_name="series")
    op.drop_index(
        "ix_series_open_last_instance_at",
        table_name="series",
        postgresql_where=sa.text("state = 'open'"),
    )
    op.drop_table("series")
    op.drop_index(op.f("ix_routing_rules_task_id"), table_name="routing_rules")
    op.drop_table("routing_rules")
    op.drop_table("reference_sets")
    op.drop_table("tasks")
    op.drop_table("studies")
    op.drop_table("destinations")
    op.drop_index("ix_audit_log_object", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("allowed_sources")
