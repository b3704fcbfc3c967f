"""SQLAlchemy 2 typed ORM: every table the platform persists. Everything carries a namespace (tenant)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TS = DateTime(timezone=True)


class Base(DeclarativeBase):
    """Declarative base."""


class ApiKey(Base):
    """An API key: only its SHA-256 is stored."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)  # kept equal to role == "admin"
    role: Mapped[str] = mapped_column(String(16), server_default="developer")
    prefix: Mapped[str | None] = mapped_column(String(16))  # the key's first characters, to recognise it
    created_by: Mapped[int | None] = mapped_column(Integer)  # the key id that created it
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(TS)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)


class Tenant(Base):
    """A tenant (team): the namespace of its keys, functions, tasks, pipelines, anomalies and rules."""

    __tablename__ = "tenants"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    created_by: Mapped[int | None] = mapped_column(Integer)


class TenantQuota(Base):
    """An operator's overrides of a tenant's quotas (NULL: the CLOUDFN_QUOTA_* default)."""

    __tablename__ = "tenant_quotas"
    namespace: Mapped[str] = mapped_column(ForeignKey("tenants.name", ondelete="CASCADE"), primary_key=True)
    concurrency: Mapped[int | None] = mapped_column(Integer)
    queued_tasks: Mapped[int | None] = mapped_column(Integer)
    functions: Mapped[int | None] = mapped_column(Integer)
    bundle_bytes: Mapped[int | None] = mapped_column(BigInteger)
    invocations_per_s: Mapped[int | None] = mapped_column(Integer)
    burst: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    updated_by: Mapped[int | None] = mapped_column(Integer)  # the key id that set them


class AuditEntry(Base):
    """One change: who (key and its tenant), what (operation and target), when, in which tenant."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    namespace: Mapped[str] = mapped_column(String(63))  # the tenant the target belongs to
    actor_key_id: Mapped[int | None] = mapped_column(Integer)
    actor_name: Mapped[str] = mapped_column(String(100))
    actor_tenant: Mapped[str] = mapped_column(String(63))
    operation: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(300))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    __table_args__ = (Index("ix_audit_ns_at", "namespace", "at"),)


class Function(Base):
    """A named function in a namespace; `deleted_at` keeps its history readable after DELETE."""

    __tablename__ = "functions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16), default="active")
    active_version: Mapped[int | None] = mapped_column(Integer)
    env_encrypted: Mapped[str | None] = mapped_column(Text)  # function-level env/secrets (Fernet ciphertext)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(TS)
    __table_args__ = (
        Index("uq_functions_live_name", "namespace", "name", unique=True,
              postgresql_where=text("deleted_at IS NULL")),
    )


class FunctionVersion(Base):
    """An immutable version: a bundle (by SHA-256), a handler and a config."""

    __tablename__ = "function_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    function_id: Mapped[int] = mapped_column(ForeignKey("functions.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    handler: Mapped[str] = mapped_column(String(300))
    config: Mapped[dict[str, Any]] = mapped_column(JSONB)
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    __table_args__ = (UniqueConstraint("function_id", "version"),)


class Task(Base):
    """One invocation (or a pipeline run) and its lifecycle."""

    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    function_id: Mapped[int | None] = mapped_column(ForeignKey("functions.id"))
    function_name: Mapped[str] = mapped_column(String(63))
    version: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default="function")
    status: Mapped[str] = mapped_column(String(16))
    input: Mapped[Any] = mapped_column(JSON, nullable=True)  # json, not jsonb: strings may hold \u0000
    output: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    logs: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    parent_id: Mapped[str | None] = mapped_column(String(36), index=True)
    step_index: Mapped[int | None] = mapped_column(Integer)
    plan: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)  # a pipeline run's steps
    created_at: Mapped[datetime] = mapped_column(TS)
    started_at: Mapped[datetime | None] = mapped_column(TS)
    finished_at: Mapped[datetime | None] = mapped_column(TS)
    owner: Mapped[str | None] = mapped_column(String(64))  # the API replica that holds it while it is open
    __table_args__ = (
        Index("ix_tasks_fn_created", "namespace", "function_name", "created_at"),
        Index("ix_tasks_open", "status", postgresql_where=text("status IN ('queued', 'running')")),
        Index("ix_tasks_open_owner", "owner", postgresql_where=text("status IN ('queued', 'running')")),
        Index("uq_tasks_idempotency", "namespace", "function_name", "idempotency_key", unique=True,
              postgresql_where=text("idempotency_key IS NOT NULL")),
    )


class ApiReplica(Base):
    """A live (or lapsed) API replica: its open tasks are its own while `lease_until` is in the future."""

    __tablename__ = "api_replicas"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), server_default="")
    started_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    lease_until: Mapped[datetime] = mapped_column(TS)
    shared: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))  # false: runs alone (exclusive)


class TaskAttempt(Base):
    """An attempt of a task that did not end it (it was retried or redriven)."""

    __tablename__ = "task_attempts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task_id: Mapped[str] = mapped_column(String(36), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    started_at: Mapped[datetime | None] = mapped_column(TS)
    finished_at: Mapped[datetime] = mapped_column(TS)
    retry_delay_s: Mapped[float | None] = mapped_column(Float)


class Pipeline(Base):
    """A named chain of functions; the output of step k is the input of step k+1."""

    __tablename__ = "pipelines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    __table_args__ = (UniqueConstraint("namespace", "name"),)


class ExecutionMetric(Base):
    """One execution's measured metrics (the lake's row, in PostgreSQL)."""

    __tablename__ = "execution_metrics"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task_id: Mapped[str] = mapped_column(String(36), index=True)
    namespace: Mapped[str] = mapped_column(String(63))
    function: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(TS)
    finished_at: Mapped[datetime] = mapped_column(TS)
    duration_ms: Mapped[float] = mapped_column(Float)
    cpu_ms: Mapped[float] = mapped_column(Float)
    cpu_wait_ms: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    node: Mapped[str | None] = mapped_column(String(64))  # the Ray node id that ran it
    peak_memory_mb: Mapped[float] = mapped_column(Float)
    queue_ms: Mapped[float] = mapped_column(Float)
    cold_start: Mapped[bool] = mapped_column(Boolean)
    error_type: Mapped[str | None] = mapped_column(String(200))
    input_bytes: Mapped[int] = mapped_column(Integer, default=0)
    output_bytes: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (
        Index("ix_metrics_fn_finished", "namespace", "function", "finished_at"),
        UniqueConstraint("task_id", "attempt", name="uq_metrics_task_attempt"),
    )


class Anomaly(Base):
    """A detected anomaly."""

    __tablename__ = "anomalies"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    function: Mapped[str] = mapped_column(String(63))
    version: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(64))
    observed: Mapped[float] = mapped_column(Float)
    expected_low: Mapped[float] = mapped_column(Float)
    expected_high: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    task_id: Mapped[str | None] = mapped_column(String(36))
    detector: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    feedback: Mapped[str | None] = mapped_column(String(32))
    detected_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    __table_args__ = (Index("ix_anomalies_fn_detected", "namespace", "function", "detected_at"),)


class DetectorState(Base):
    """A function's persisted detector models."""

    __tablename__ = "detector_state"
    namespace: Mapped[str] = mapped_column(String(63), primary_key=True)
    function: Mapped[str] = mapped_column(String(63), primary_key=True)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())


class AlertRule(Base):
    """A user's alert rule (its validated JSON spec)."""

    __tablename__ = "alert_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(100))
    function: Mapped[str] = mapped_column(String(63))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    state: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(TS)


class Alert(Base):
    """One firing episode of a rule."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id"), index=True)
    namespace: Mapped[str] = mapped_column(String(63))
    function: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(TS)
    resolved_at: Mapped[datetime | None] = mapped_column(TS)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))  # the acknowledging key's name
    acknowledged_at: Mapped[datetime | None] = mapped_column(TS)


class AlertDelivery(Base):
    """One delivery attempt of one notification to one channel."""

    __tablename__ = "alert_deliveries"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    notification: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(300))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(TS)
    error: Mapped[str | None] = mapped_column(Text)
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("alert_notifications.id"), index=True)


class AlertNotification(Base):
    """The outbox: one notice to one channel, committed before it is sent, sent until acknowledged."""

    __tablename__ = "alert_notifications"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    dedup_id: Mapped[str] = mapped_column(String(64), unique=True)  # webhook-id, Message-ID, Slack metadata key
    namespace: Mapped[str] = mapped_column(String(63))
    receiver: Mapped[str] = mapped_column(String(200))
    channel: Mapped[dict[str, Any]] = mapped_column(JSONB)
    group_key: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))  # the notice's: firing | resolved
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    alert_ids: Mapped[list[int]] = mapped_column(JSONB, default=list)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(TS)
    last_error: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (Index("ix_alert_notifications_due", "state", "next_attempt_at"),)


class AlertSilence(Base):
    """A silence (Alertmanager API v2 shape), scoped to the tenant that created it."""

    __tablename__ = "alert_silences"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63), index=True)
    matchers: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    starts_at: Mapped[datetime] = mapped_column(TS)
    ends_at: Mapped[datetime] = mapped_column(TS)
    created_by: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())


class DestinationDelivery(Base):
    """The outcome of delivering one ended task (one attempt of it) to its completion destination."""

    __tablename__ = "destination_deliveries"
    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    destination: Mapped[str] = mapped_column(String(16))  # on_success | on_failure
    target: Mapped[str] = mapped_column(String(2100))  # the webhook URL or function:NAME
    webhook_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))  # delivered | failed (gave up)
    tries: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    target_task_id: Mapped[str | None] = mapped_column(String(36))
    at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
