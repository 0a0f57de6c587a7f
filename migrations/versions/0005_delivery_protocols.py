"""Radiologists' side: delivery protocols, protocol-neutral delivery status, the volume report
file, and a per-task retrieval-similarity threshold.

- ``destinations.protocol`` (``c-store`` | ``stow-rs``) and ``destinations.url`` (STOW-RS base
  URL); ``ae_title`` becomes NULL-able (a DICOMweb destination has none);
- ``deliveries.last_dimse_status`` becomes ``last_status`` (the DIMSE status of a C-STORE, the
  HTTP status or STOW-RS FailureReason of a STOW-RS);
- ``results.report_path``: the TID 1500 volume report written next to the SEG;
- ``tasks.min_similarity``: slices whose best retrieval similarity is below it are flagged and
  left unsegmented (0 = never);
- ``jobs.claimed_by``: ``host:pid`` of the worker running (or that last ran) the job.

Revision ID: 0005_delivery_protocols
Revises: 0004_curation
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_delivery_protocols"
down_revision: str | None = "0004_curation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("destinations", sa.Column("protocol", sa.String(length=16),
                                            server_default="c-store", nullable=False))
    op.create_check_constraint(op.f("ck_destinations_protocol"), "destinations",
                               "protocol IN ('c-store', 'stow-rs')")
    op.add_column("destinations", sa.Column("url", sa.Text(), nullable=True))
    op.alter_column("destinations", "ae_title", existing_type=sa.String(length=16),
                    nullable=True)
    op.create_check_constraint(
        op.f("ck_destinations_protocol_address"), "destinations",
        "(protocol = 'c-store' AND ae_title IS NOT NULL) OR "
        "(protocol = 'stow-rs' AND url IS NOT NULL)")
    op.alter_column("deliveries", "last_dimse_status", new_column_name="last_status",
                    existing_type=sa.Integer())
    op.add_column("results", sa.Column("report_path", sa.Text(), nullable=True))
    op.add_column("tasks", sa.Column("min_similarity", sa.Float(), server_default="0",
                                     nullable=False))
    op.add_column("jobs", sa.Column("claimed_by", sa.String(length=128), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "claimed_by")
    op.drop_column("tasks", "min_similarity")
    op.drop_column("results", "report_path")
    op.alter_column("deliveries", "last_status", new_column_name="last_dimse_status",
                    existing_type=sa.Integer())
    op.drop_constraint(op.f("ck_destinations_protocol_address"), "destinations", type_="check")
    op.execute("DELETE FROM destinations WHERE protocol <> 'c-store'")
    op.alter_column("destinations", "ae_title", existing_type=sa.String(length=16),
                    nullable=False)
    op.drop_column("destinations", "url")
    op.drop_constraint(op.f("ck_destinations_protocol"), "destinations", type_="check")
    op.drop_column("destinations", "protocol")
