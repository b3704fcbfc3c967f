"""Path and query parameter types shared by the routers: a malformed or out-of-range id is a 4xx here,
before it reaches a query (PostgreSQL would refuse it with an error that is not the caller's to read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from core.models import INT32_MAX, INT64_MAX, TASK_ID_PATTERN

TaskId = Annotated[str, Path(pattern=TASK_ID_PATTERN, description="a task or run id")]
RuleId = Annotated[int, Path(ge=1, le=INT32_MAX)]
AlertId = Annotated[int, Path(ge=1, le=INT32_MAX)]
AnomalyId = Annotated[int, Path(ge=1, le=INT64_MAX)]
VersionQuery = Annotated[int | None, Query(ge=1, le=INT32_MAX)]
RuleIdQuery = Annotated[int | None, Query(ge=1, le=INT32_MAX)]
