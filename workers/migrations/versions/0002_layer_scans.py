"""Layer scan cache: one row per (layer digest, scan key).

Revision ID: 0002_layer_scans
Revises: 0001_initial
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_layer_scans"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the layer_scans table."""
    op.create_table(
        "layer_scans",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("digest", sa.String(length=135), nullable=False),
        sa.Column("scan_key", sa.Text(), nullable=False),
        sa.Column("result", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_layer_scans"),
        sa.UniqueConstraint("digest", "scan_key", name="uq_layer_scans_digest_scan_key"),
    )


def downgrade() -> None:
    """Drop the layer_scans table."""
    op.drop_table("layer_scans")
