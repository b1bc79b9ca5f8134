"""Alembic revisions of the Tollgate schema, oldest first (the first one creates everything)."""
