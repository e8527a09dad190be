"""Storage: SQLAlchemy tables, queries and Alembic migrations. The only place SQL lives."""
