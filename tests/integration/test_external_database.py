"""The platform on a PostgreSQL it did not start (`make test-external-pg`): TLS, a non-superuser role, one schema."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from core.db.engine import libpq_url
from tests.conftest import ROOT, deploy

pytestmark = pytest.mark.skipif(not os.environ.get("CLOUDFN_DATABASE_URL"),
                                reason="runs against an external PostgreSQL (make test-external-pg)")


def test_the_platform_connects_over_tls_as_a_role_without_privileges(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        assert conn.info.pgconn.ssl_in_use
        su, createdb, createrole = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
        assert (su, createdb, createrole) == (False, False, False)


def test_every_platform_table_lives_in_the_roles_own_schema(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        user = conn.execute("SELECT current_user").fetchone()[0]
        placed = dict(conn.execute(
            "SELECT table_name, table_schema FROM information_schema.tables "
            "WHERE table_name IN ('functions', 'tasks', 'execution_metrics', 'alembic_version')").fetchall())
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.cloudfn_probe (x int)")
    assert schema == user
    assert set(placed) == {"functions", "tasks", "execution_metrics", "alembic_version"}
    assert set(placed.values()) == {schema}


def test_the_server_refuses_a_connection_without_tls(database_url: str) -> None:
    parts = urlsplit(libpq_url(database_url))
    plain = urlunsplit(parts._replace(query="sslmode=disable"))
    with pytest.raises(psycopg.OperationalError, match="no encryption|reject"):
        psycopg.connect(plain, connect_timeout=5).close()


def test_an_invocation_is_recorded_in_the_external_database(api: httpx.Client, database_url: str,
                                                            api_server: Any) -> None:
    assert deploy(api, "ext-db-hello", ROOT / "examples" / "hello").status_code == 201
    rec = api.post("/v1/functions/ext-db-hello/invocations", params={"wait": 60}, json={"name": "pg"}).json()
    assert rec["status"] == "succeeded", rec
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute("SELECT status FROM tasks WHERE id = %s", (rec["task_id"],)).fetchone()
    assert row == ("succeeded",)
