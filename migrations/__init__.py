"""Alembic migrations for the PostgreSQL schema (`rewards db upgrade`)."""
