"""Retention: ``instances.purged_at`` and ``results.purged_at`` (files deleted, rows kept).

Revision ID: 0006_retention
Revises: 0005_delivery_protocols
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_retention"
down_revision: str | None = "0005_delivery_protocols"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("instances", sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("results", sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("results", "purged_at")
    op.drop_column("instances", "purged_at")
