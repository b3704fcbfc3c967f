"""`serve deploy configs/serve.yaml` builds the application through `app_builder`: against a real PostgreSQL it
migrates, creates the node's admin key and registers it, and binds the deployment with the given settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from core.auth import hash_key
from core.db.engine import make_engine
from core.db.tables import ApiKey


def test_builder_prepares_the_database_and_binds_the_api(database_url: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.serve import Application

    from serve_app.deployment import app_builder

    monkeypatch.setenv("CLOUDFN_DATABASE_URL", database_url)
    app = app_builder({"home": str(tmp_path / "node-home"), "lake_uri": "s3://lake-bucket/metrics"})
    assert isinstance(app, Application)
    key = (tmp_path / "node-home" / "admin.key").read_text().strip()
    assert (tmp_path / "node-home" / "admin.key").stat().st_mode & 0o777 == 0o600
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(ApiKey.is_admin).where(ApiKey.key_hash == hash_key(key))).first()
    finally:
        engine.dispose()
    assert row is not None and row[0] is True
    again = app_builder({"home": str(tmp_path / "node-home")})  # a rebuild keeps the node's key
    assert isinstance(again, Application)
    assert (tmp_path / "node-home" / "admin.key").read_text().strip() == key
