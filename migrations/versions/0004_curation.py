"""Curation: candidate batches, API tokens, a job kind for reference preparation.

- ``reference_candidates``: one import or one radiologist correction awaiting review;
- ``reference_slices.candidate_id``; ``reference_slices.reference_set_id`` becomes NULL-able (a
  candidate belongs to no version until it is approved);
- ``api_tokens``: bearer tokens with a role, stored as SHA-256 only;
- ``jobs.kind`` gains ``prepare_references``.

Revision ID: 0004_curation
Revises: 0003_backend_names
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004_curation"
down_revision: str | None = "0003_backend_names"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS_OLD = "kind IN ('segment', 'deliver', 'embed_references')"
_KINDS_NEW = "kind IN ('segment', 'deliver', 'embed_references', 'prepare_references')"


def upgrade() -> None:
    op.create_table(
        "reference_candidates",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("origin", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=32), server_default="pending", nullable=False),
        sa.Column("corrected_job_id", sa.BigInteger(), nullable=True),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("slices", sa.Integer(), server_default="0", nullable=False),
        sa.Column("dice", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reference_set_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.CheckConstraint("origin IN ('import', 'upload', 'feedback')",
                           name=op.f("ck_reference_candidates_origin")),
        sa.CheckConstraint("state IN ('pending', 'approved', 'rejected')",
                           name=op.f("ck_reference_candidates_state")),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE",
                                name=op.f("fk_reference_candidates_task_id_tasks")),
        sa.ForeignKeyConstraint(["corrected_job_id"], ["jobs.id"], ondelete="SET NULL",
                                name=op.f("fk_reference_candidates_corrected_job_id_jobs")),
        sa.ForeignKeyConstraint(["reference_set_id"], ["reference_sets.id"], ondelete="SET NULL",
                                name=op.f("fk_reference_candidates_reference_set_id_reference_sets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_candidates")),
    )
    op.create_index(op.f("ix_reference_candidates_task_id"), "reference_candidates", ["task_id"])
    op.add_column("reference_slices", sa.Column("candidate_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(op.f("fk_reference_slices_candidate_id_reference_candidates"),
                          "reference_slices", "reference_candidates", ["candidate_id"], ["id"],
                          ondelete="CASCADE")
    op.create_index(op.f("ix_reference_slices_candidate_id"), "reference_slices",
                    ["candidate_id"])
    op.alter_column("reference_slices", "reference_set_id", existing_type=sa.BigInteger(),
                    nullable=True)
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('viewer', 'reviewer', 'admin')",
                           name=op.f("ck_api_tokens_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_tokens_token_sha256")),
    )
    op.drop_constraint(op.f("ck_jobs_kind"), "jobs", type_="check")
    op.create_check_constraint(op.f("ck_jobs_kind"), "jobs", _KINDS_NEW)


def downgrade() -> None:
    op.drop_constraint(op.f("ck_jobs_kind"), "jobs", type_="check")
    op.execute("DELETE FROM jobs WHERE kind = 'prepare_references'")
    op.create_check_constraint(op.f("ck_jobs_kind"), "jobs", _KINDS_OLD)
    op.drop_table("api_tokens")
    op.execute("DELETE FROM reference_slices WHERE reference_set_id IS NULL")
    op.alter_column("reference_slices", "reference_set_id", existing_type=sa.BigInteger(),
                    nullable=False)
    op.drop_index(op.f("ix_reference_slices_candidate_id"), "reference_slices")
    op.drop_constraint(op.f("fk_reference_slices_candidate_id_reference_candidates"),
                       "reference_slices", type_="foreignkey")
    op.drop_column("reference_slices", "candidate_id")
    op.drop_index(op.f("ix_reference_candidates_task_id"), "reference_candidates")
    op.drop_table("reference_candidates")
