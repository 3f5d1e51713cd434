"""Alembic migrations of the projection schema (applied by ``projections.database.migrate``)."""
