"""Alembic environment: the engine is handed in by github_app.db.upgrade."""

from __future__ import annotations

from alembic import context

from github_app.db.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # pragma: no cover - only when someone runs the alembic CLI by hand
    from github_app.db import make_engine
    from github_app.settings import Settings

    engine = make_engine(Settings.from_env(require_github=False).database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
