"""Tenant quotas in the database: the operator's overrides, and a deploy's check of functions and bundle storage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.access import Caller
from core.db.audit import Change, record
from core.db.tables import Function, FunctionVersion, Tenant, TenantQuota
from core.errors import NotFound, QuotaExceeded
from core.quotas import QUOTA_NAMES, Quotas

DEPLOY_RETRY_AFTER_S = 60  # a function or storage quota frees only when the tenant deletes something


@dataclass(frozen=True)
class DeployUsage:
    """What a tenant's live functions use: how many, and the bytes of their distinct bundles."""

    functions: int
    bundle_bytes: int
    has_bundle: bool  # whether the bundle being deployed is among them already (it then costs nothing more)


async def deploy_usage(conn: AsyncConnection, namespace: str, sha256: str) -> DeployUsage:
    """A tenant's function count and bundle storage (each distinct bundle counted once)."""
    count = (await conn.execute(select(func.count()).select_from(Function).where(
        Function.namespace == namespace, Function.deleted_at.is_(None)))).scalar_one()
    bundles = (select(FunctionVersion.sha256, func.max(FunctionVersion.size_bytes).label("size"))
               .join(Function, Function.id == FunctionVersion.function_id)
               .where(Function.namespace == namespace, Function.deleted_at.is_(None))
               .group_by(FunctionVersion.sha256).subquery())
    row = (await conn.execute(select(func.coalesce(func.sum(bundles.c.size), 0),
                                     func.bool_or(bundles.c.sha256 == sha256)))).one()
    return DeployUsage(int(count), int(row[0]), bool(row[1]))


async def check_deploy(conn: AsyncConnection, namespace: str, limits: Quotas, *, new_function: bool, sha256: str,
                       size_bytes: int, lock: bool = True) -> None:
    """Refuse (QuotaExceeded) a deploy that would take the tenant past its function or storage quota; with
    `lock`, the tenant's deploys are serialised until the transaction ends, so two cannot both fit the last place."""
    if lock:
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('cloudfn-quota:' || :ns))"),
                           {"ns": namespace})
    used = await deploy_usage(conn, namespace, sha256)
    if new_function and used.functions + 1 > limits.functions:
        raise QuotaExceeded(f"tenant {namespace!r} has {used.functions} functions, its quota (functions = "
                            f"{limits.functions}): delete one, or ask the operator to raise it",
                            tenant=namespace, quota="functions", limit=limits.functions, used=used.functions,
                            retry_after_s=DEPLOY_RETRY_AFTER_S)
    after = used.bundle_bytes + (0 if used.has_bundle else size_bytes)
    if after > limits.bundle_bytes:
        raise QuotaExceeded(f"this bundle ({size_bytes} bytes) would take tenant {namespace!r} to {after} bytes of "
                            f"bundles, above its quota (bundle_bytes = {limits.bundle_bytes}; {used.bundle_bytes} in "
                            "use): delete functions it no longer needs, or ask the operator to raise it",
                            tenant=namespace, quota="bundle_bytes", limit=limits.bundle_bytes,
                            used=used.bundle_bytes, retry_after_s=DEPLOY_RETRY_AFTER_S)


def overrides_view(row: Any | None) -> dict[str, int | None]:
    """A tenant's overrides by quota name (None where it uses the default)."""
    return {name: (getattr(row, name) if row is not None else None) for name in QUOTA_NAMES}


class QuotaStore:
    """The operator's per-tenant overrides; every change is audited in its own transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def all_overrides(self) -> dict[str, dict[str, int | None]]:
        """Every tenant's overrides that has any."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(TenantQuota))).all()
        return {r.namespace: overrides_view(r) for r in rows}

    async def all_storage(self) -> dict[str, tuple[int, int]]:
        """Every tenant's (live functions, bytes of its distinct bundles), for those with any function."""
        bundles = (select(Function.namespace, FunctionVersion.sha256,
                          func.max(FunctionVersion.size_bytes).label("size"))
                   .join(Function, Function.id == FunctionVersion.function_id)
                   .where(Function.deleted_at.is_(None))
                   .group_by(Function.namespace, FunctionVersion.sha256).subquery())
        async with self.engine.connect() as conn:
            counts = (await conn.execute(select(Function.namespace, func.count()).where(
                Function.deleted_at.is_(None)).group_by(Function.namespace))).all()
            sizes = {ns: size for ns, size in (await conn.execute(
                select(bundles.c.namespace, func.sum(bundles.c.size)).group_by(bundles.c.namespace))).all()}
        return {ns: (int(n), int(sizes.get(ns) or 0)) for ns, n in counts}

    async def storage(self, tenant: str) -> tuple[int, int]:
        """One tenant's (live functions, bytes of its distinct bundles)."""
        async with self.engine.connect() as conn:
            used = await deploy_usage(conn, tenant, "")
        return used.functions, used.bundle_bytes

    async def check_deploy(self, namespace: str, name: str, limits: Quotas, *, sha256: str, size_bytes: int) -> None:
        """Refuse early (before the bundle is stored and checked) a deploy that cannot fit the tenant's quotas;
        the deploy's own transaction checks again under the tenant's lock."""
        async with self.engine.connect() as conn:
            exists = (await conn.execute(select(Function.id).where(
                Function.namespace == namespace, Function.name == name, Function.deleted_at.is_(None)))).first()
            await check_deploy(conn, namespace, limits, new_function=exists is None, sha256=sha256,
                               size_bytes=size_bytes, lock=False)

    async def _tenant_exists(self, conn: AsyncConnection, name: str) -> bool:
        return (await conn.execute(select(Tenant.name).where(Tenant.name == name))).first() is not None

    async def overrides(self, tenant: str) -> dict[str, int | None]:
        """One tenant's overrides; NotFound for an unknown tenant."""
        async with self.engine.connect() as conn:
            if not await self._tenant_exists(conn, tenant):
                raise NotFound(f"no tenant named {tenant!r}")
            row = (await conn.execute(select(TenantQuota).where(TenantQuota.namespace == tenant))).first()
        return overrides_view(row)

    async def set(self, caller: Caller, tenant: str, changes: dict[str, int | None]) -> dict[str, int | None]:
        """Set (or, with None, reset to the default) some of a tenant's quotas; its overrides after."""
        async with self.engine.begin() as conn:
            if not await self._tenant_exists(conn, tenant):
                raise NotFound(f"no tenant named {tenant!r}")
            values = {**changes, "updated_by": caller.key_id, "updated_at": func.now()}
            await conn.execute(pg_insert(TenantQuota).values(namespace=tenant, **values).on_conflict_do_update(
                index_elements=[TenantQuota.namespace], set_=values))
            await record(conn, Change(caller, "tenants.quotas", f"tenant/{tenant}", namespace=tenant,
                                      detail={"set": changes}))
            row = (await conn.execute(select(TenantQuota).where(TenantQuota.namespace == tenant))).one()
        return overrides_view(row)
