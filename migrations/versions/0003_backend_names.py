"""Segmentation backends are named by the registry: ``sam2`` becomes ``sam2-memory``.

Revision ID: 0003_backend_names
Revises: 0002_schema
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_backend_names"
down_revision: str | None = "0002_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE tasks SET backend = 'sam2-memory' WHERE backend = 'sam2'")
    op.alter_column("tasks", "backend", server_default="sam2-memory",
                    existing_type=sa.String(length=32), existing_nullable=False)


def downgrade() -> None:
    op.execute("UPDATE tasks SET backend = 'sam2' WHERE backend = 'sam2-memory'")
    op.alter_column("tasks", "backend", server_default="sam2",
                    existing_type=sa.String(length=32), existing_nullable=False)
