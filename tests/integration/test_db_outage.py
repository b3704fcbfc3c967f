"""While PostgreSQL cannot be reached: requests get 503 with Retry-After, and the group-commit writer keeps every
result (and the rows of work already started) until the database answers again. Real PostgreSQL; the outage is
a server address nothing listens on, then the real one."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest
from sqlalchemy import create_engine, text

from core.db.engine import libpq_url
from core.errors import DatabaseUnavailable
from serve_app.http.errors import domain_error, mapped
from serve_app.write.writer import GroupCommitWriter, TaskInsert, TaskResult
from tests.conftest import free_port


def unreachable_url() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=2"


def task_row(task_id: str) -> TaskInsert:
    return TaskInsert(id=task_id, namespace="default", function_id=None, function_name="outage", version=1,
                      input_json="null", created_at=time.time())


def status_of(database_url: str, task_id: str) -> str | None:
    eng = create_engine(database_url)
    with eng.connect() as c:
        got = c.execute(text("SELECT status FROM tasks WHERE id = :id"), {"id": task_id}).scalar()
    eng.dispose()
    return got


def test_an_unreachable_database_is_a_503_with_retry_after() -> None:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(libpq_url(unreachable_url()))
    known = mapped(caught.value)
    assert isinstance(known, DatabaseUnavailable)
    status, body, headers = domain_error(known)
    assert status == 503 and body["error"]["code"] == "database_unavailable" and int(headers["Retry-After"]) >= 1
    assert mapped(ValueError("not a database error")) is None


def test_writer_holds_results_back_until_the_database_answers(database_url: str) -> None:
    queued, started = str(uuid.uuid4()), str(uuid.uuid4())

    async def scenario() -> tuple[bool, bool]:
        good = GroupCommitWriter(database_url, "outage-test")
        good.start()
        await good.insert(task_row(queued))  # accepted before the outage
        await good.close()

        writer = GroupCommitWriter(database_url, "outage-test")
        writer.dsn = libpq_url(unreachable_url())  # the outage: the server's address answers nothing
        writer.start()
        with pytest.raises(psycopg.OperationalError):
            await writer.insert(task_row(str(uuid.uuid4())))  # a request's insert fails: its caller gets a 503
        step_row = writer.insert_nowait(task_row(started))  # work already started: written come what may
        result = writer.finish(TaskResult(queued, "succeeded", "1", None, "", time.time(), time.time(), 1, None))
        await asyncio.sleep(1.0)
        held = not result.done() and not step_row.done()
        writer.dsn = libpq_url(database_url)  # the database is back
        await asyncio.wait_for(asyncio.gather(result, step_row), timeout=30)
        await writer.close()
        return held, result.done()

    held, written = asyncio.run(scenario())
    assert held and written
    assert status_of(database_url, queued) == "succeeded"  # the held-back result reached the database
    assert status_of(database_url, started) == "queued"
