"""PostgreSQL access: the typed ORM, engines, Alembic migrations, the embedded server launcher."""
