"""The function repository: functions and their versions, with the audit entry of each change in its
transaction, and a notice on CATALOG_CHANNEL at its commit so every API replica forgets its cached copy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from core.db.audit import Change, record
from core.db.quotas import check_deploy
from core.db.tables import Function, FunctionVersion
from core.errors import Conflict, InvalidInput, NotFound
from core.models import masked_destinations
from core.quotas import Quotas

CATALOG_CHANNEL = "cloudfn_catalog"  # payload: "<namespace>/<name>" of a function that changed
WARMED_CHANNEL = "cloudfn_warmed"  # payload: "<namespace>/<name>": its home replica handled the change's notice


async def announce(conn: Any, namespace: str, name: str) -> None:
    """Tell every replica, at this transaction's commit, that a function changed."""
    await conn.execute(text("SELECT pg_notify(:ch, :fn)"), {"ch": CATALOG_CHANNEL, "fn": f"{namespace}/{name}"})


def function_view(fn: Any, ver: Any | None) -> dict[str, Any]:
    """The API shape of a function with its active version."""
    out: dict[str, Any] = {"name": fn.name, "namespace": fn.namespace, "state": fn.state,
                           "active_version": fn.active_version, "created_at": fn.created_at.isoformat(),
                           "updated_at": fn.updated_at.isoformat()}
    if ver is not None:
        out.update(version_view(ver))
        out["version"] = ver.version
    return out


def version_view(ver: Any) -> dict[str, Any]:
    """The API shape of a version (secrets in env are masked)."""
    cfg = masked_destinations({k: v for k, v in ver.config.items() if k not in ("env_sealed", "env_names", "env")})
    cfg["env"] = {k: "***" for k in ver.config.get("env_names", [])}  # names only: values are never returned
    return {"version": ver.version, "handler": ver.handler, "sha256": ver.sha256, "config": cfg,
            "size_bytes": ver.size_bytes, "created_at": ver.created_at.isoformat()}


class FunctionStore:
    """Database operations on functions and versions."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def announce_warmed(self, namespace: str, name: str) -> None:
        """Tell every replica that this one, the function's home, is done starting its warm children for the
        change just announced (the replica that made the change answers once it hears this)."""
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT pg_notify(:ch, :fn)"), {"ch": WARMED_CHANNEL, "fn": f"{namespace}/{name}"})

    async def add_version(self, namespace: str, name: str, *, sha256: str, handler: str,
                          config: dict[str, Any], size_bytes: int, change: Change | None = None,
                          quotas: Quotas | None = None) -> dict[str, Any]:
        """Create the function if new, add the next version and make it active; one transaction (with the
        audit entry of the change, if given, and the check of the tenant's function and storage quotas)."""
        async with self.engine.begin() as conn:
            fn = (await conn.execute(select(Function).where(
                Function.namespace == namespace, Function.name == name, Function.deleted_at.is_(None)
            ).with_for_update())).first()
            if quotas is not None:
                await check_deploy(conn, namespace, quotas, new_function=fn is None, sha256=sha256,
                                   size_bytes=size_bytes)
            now = datetime.now(UTC)
            if fn is None:
                fid = (await conn.execute(insert(Function).values(
                    namespace=namespace, name=name, state="active", created_at=now, updated_at=now
                ).returning(Function.id))).scalar_one()
            else:
                fid = fn.id
            next_v = (await conn.execute(select(func.coalesce(func.max(FunctionVersion.version), 0) + 1).where(
                FunctionVersion.function_id == fid))).scalar_one()
            await conn.execute(insert(FunctionVersion).values(
                function_id=fid, version=next_v, sha256=sha256, handler=handler,
                config=config, size_bytes=size_bytes, created_at=now))
            await conn.execute(update(Function).where(Function.id == fid).values(
                active_version=next_v, updated_at=now))
            if change is not None:
                await record(conn, Change(change.caller, change.operation, change.target, namespace,
                                          {**change.detail, "version": next_v, "sha256": sha256}))
            await announce(conn, namespace, name)
        return await self.get(namespace, name)

    async def _row(self, conn: Any, namespace: str, name: str) -> Any:
        fn = (await conn.execute(select(Function).where(
            Function.namespace == namespace, Function.name == name, Function.deleted_at.is_(None)))).first()
        if fn is None:
            raise NotFound(f"no function named {name!r}")
        return fn

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        """One function with its active version."""
        async with self.engine.connect() as conn:
            fn = await self._row(conn, namespace, name)
            ver = (await conn.execute(select(FunctionVersion).where(
                FunctionVersion.function_id == fn.id, FunctionVersion.version == fn.active_version))).first()
        return function_view(fn, ver)

    async def all(self, namespace: str) -> list[dict[str, Any]]:
        """All live functions of a namespace with their active versions."""
        async with self.sessions() as conn:
            rows = (await conn.execute(
                select(Function, FunctionVersion).outerjoin(FunctionVersion, (
                    FunctionVersion.function_id == Function.id) & (FunctionVersion.version == Function.active_version))
                .where(Function.namespace == namespace, Function.deleted_at.is_(None)).order_by(Function.name)
            )).all()
        return [function_view(fn, ver) for fn, ver in rows]

    async def versions(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Every version of a function, newest first."""
        async with self.sessions() as conn:
            fn = (await conn.execute(select(Function).where(
                Function.namespace == namespace, Function.name == name, Function.deleted_at.is_(None)))).scalar()
            if fn is None:
                raise NotFound(f"no function named {name!r}")
            rows = (await conn.execute(select(FunctionVersion).where(FunctionVersion.function_id == fn.id)
                                       .order_by(FunctionVersion.version.desc()))).scalars().all()
        return [version_view(v) for v in rows]

    async def set_state(self, namespace: str, name: str, state: str, change: Change | None = None) -> dict[str, Any]:
        """Activate or deactivate."""
        async with self.engine.begin() as conn:
            fn = await self._row(conn, namespace, name)
            await conn.execute(update(Function).where(Function.id == fn.id).values(
                state=state, updated_at=datetime.now(UTC)))
            if change is not None:
                await record(conn, change)
            await announce(conn, namespace, name)
        return await self.get(namespace, name)

    async def set_env(self, namespace: str, name: str, sealed: str | None, change: Change | None = None) -> None:
        """Replace a function's own (encrypted) env."""
        async with self.engine.begin() as conn:
            fn = await self._row(conn, namespace, name)
            await conn.execute(update(Function).where(Function.id == fn.id).values(
                env_encrypted=sealed, updated_at=datetime.now(UTC)))
            if change is not None:
                await record(conn, change)
            await announce(conn, namespace, name)

    async def env_names(self, namespace: str, name: str, opener: Any) -> list[str]:
        """Names of a function's own env variables."""
        async with self.engine.connect() as conn:
            fn = await self._row(conn, namespace, name)
        return sorted(opener(fn.env_encrypted))

    async def set_active_version(self, namespace: str, name: str, version: int | None,
                                 change: Change | None = None) -> dict[str, Any]:
        """Roll back (or forward) to a version: the one given, else the one before the active one."""
        async with self.engine.begin() as conn:
            fn = await self._row(conn, namespace, name)
            if version is None:
                version = (await conn.execute(select(func.max(FunctionVersion.version)).where(
                    FunctionVersion.function_id == fn.id,
                    FunctionVersion.version < (fn.active_version or 0)))).scalar_one()
                if version is None:
                    raise InvalidInput(f"function {name!r} has no version before {fn.active_version}")
            exists = (await conn.execute(select(FunctionVersion.id).where(
                FunctionVersion.function_id == fn.id, FunctionVersion.version == version))).first()
            if exists is None:
                raise NotFound(f"function {name!r} has no version {version}")
            await conn.execute(update(Function).where(Function.id == fn.id).values(
                active_version=version, updated_at=datetime.now(UTC)))
            if change is not None:
                await record(conn, Change(change.caller, change.operation, change.target, namespace,
                                          {"from_version": fn.active_version, "version": version}))
            await announce(conn, namespace, name)
        return await self.get(namespace, name)

    async def delete(self, namespace: str, name: str, change: Change | None = None) -> list[str]:
        """Soft-delete (tasks and metrics stay readable); return the bundle hashes nothing else uses."""
        async with self.engine.begin() as conn:
            fn = await self._row(conn, namespace, name)
            await conn.execute(update(Function).where(Function.id == fn.id).values(
                deleted_at=datetime.now(UTC), state="deleted"))
            if change is not None:
                await record(conn, change)
            await announce(conn, namespace, name)
            shas = (await conn.execute(select(FunctionVersion.sha256).where(
                FunctionVersion.function_id == fn.id).distinct())).scalars().all()
            still = (await conn.execute(select(FunctionVersion.sha256).join(
                Function, Function.id == FunctionVersion.function_id).where(
                Function.deleted_at.is_(None), FunctionVersion.sha256.in_(shas)))).scalars().all()
        return sorted(set(shas) - set(still))

    async def runtime_rows(self, namespace: str, name: str, version: int | None) -> tuple[Any, Any]:
        """A live function's row and the row of one of its versions (its active one if None); NotFound or
        Conflict (no active version)."""
        async with self.engine.connect() as conn:
            fn = await self._row(conn, namespace, name)
            want = version if version is not None else fn.active_version
            if want is None:
                raise Conflict(f"function {name!r} has no active version")
            ver = (await conn.execute(select(FunctionVersion).where(
                FunctionVersion.function_id == fn.id, FunctionVersion.version == want))).first()
        if ver is None:
            raise NotFound(f"function {name!r} has no version {want}")
        return fn, ver
