"""Alembic migrations of the Tollgate store; run them with ``Store.migrate()`` or ``tollgate migrate``."""
