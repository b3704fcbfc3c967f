"""Tenants and API keys in the database: create, list, revoke, rotate, and look a key up by its digest."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.access import Caller, Role
from core.db.audit import Change, record
from core.db.tables import ApiKey, Tenant
from core.errors import Conflict, NotFound

KEY_PREFIX = "cfk_"


def new_key() -> str:
    """A fresh key: 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key (SHA-256: a key is 256 random bits, so a slow password hash buys nothing)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRow:
    """What authentication needs of a live key."""

    id: int
    namespace: str
    name: str
    role: Role
    expires_at: datetime | None


def key_view(k: Any) -> dict[str, Any]:
    """The API shape of a key (never its secret)."""
    return {"id": k.id, "tenant": k.namespace, "name": k.name, "role": k.role, "prefix": k.prefix,
            "created_at": k.created_at.isoformat(), "expires_at": k.expires_at.isoformat() if k.expires_at else None,
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None, "created_by": k.created_by}


def tenant_view(t: Any) -> dict[str, Any]:
    """The API shape of a tenant."""
    return {"name": t.name, "created_at": t.created_at.isoformat(), "created_by": t.created_by}


REVOKED_CHANNEL = "cloudfn_key_revoked"  # payload: the SHA-256 digest of a key just revoked


async def announce_revoked(conn: AsyncConnection, digest: str) -> None:
    """Tell every API replica, at this transaction's commit, to forget a revoked key it may have cached."""
    await conn.execute(text("SELECT pg_notify(:ch, :d)"), {"ch": REVOKED_CHANNEL, "d": digest})


class KeyStore:
    """Tenants and keys; every change is audited in its own transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def lookup(self, digest: str) -> KeyRow | None:
        """The live (not revoked) key with this digest; expiry is the caller's to check."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(ApiKey.id, ApiKey.namespace, ApiKey.name, ApiKey.role,
                                             ApiKey.expires_at).where(
                ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))).first()
        return None if row is None else KeyRow(row[0], row[1], row[2], Role[row[3]], row[4])

    async def create_tenant(self, caller: Caller, name: str) -> dict[str, Any]:
        """A new tenant; Conflict if the name is taken."""
        async with self.engine.begin() as conn:
            got = (await conn.execute(pg_insert(Tenant).values(name=name, created_by=caller.key_id)
                                      .on_conflict_do_nothing().returning(Tenant.name))).scalar()
            if got is None:
                raise Conflict(f"a tenant named {name!r} exists already")
            await record(conn, Change(caller, "tenants.create", f"tenant/{name}", namespace=name))
            row = (await conn.execute(select(Tenant).where(Tenant.name == name))).one()
        return tenant_view(row)

    async def tenants(self, only: str | None) -> list[dict[str, Any]]:
        """Every tenant, or just one."""
        q = select(Tenant).order_by(Tenant.name)
        if only is not None:
            q = q.where(Tenant.name == only)
        async with self.engine.connect() as conn:
            return [tenant_view(t) for t in (await conn.execute(q)).all()]

    async def _tenant_exists(self, conn: AsyncConnection, name: str) -> bool:
        return (await conn.execute(select(Tenant.name).where(Tenant.name == name))).first() is not None

    async def create_key(self, caller: Caller, *, tenant: str, role: Role, name: str,
                         expires_at: datetime | None) -> dict[str, Any]:
        """A new key of a tenant; the answer is the only place its secret appears."""
        async with self.engine.begin() as conn:
            if not await self._tenant_exists(conn, tenant):
                raise NotFound(f"no tenant named {tenant!r}")
            out = await self._insert_key(conn, caller, tenant=tenant, role=role, name=name, expires_at=expires_at)
            await record(conn, Change(caller, "keys.create", f"key/{out['id']}", namespace=tenant,
                                      detail={"name": name, "role": role.name}))
        return out

    async def _insert_key(self, conn: AsyncConnection, caller: Caller, *, tenant: str, role: Role, name: str,
                          expires_at: datetime | None) -> dict[str, Any]:
        key = new_key()
        kid = (await conn.execute(insert(ApiKey).values(
            namespace=tenant, name=name, key_hash=hash_key(key), is_admin=role is Role.admin, role=role.name,
            prefix=key[:12], created_by=caller.key_id, expires_at=expires_at).returning(ApiKey.id))).scalar_one()
        row = (await conn.execute(select(ApiKey).where(ApiKey.id == kid))).one()
        return {**key_view(row), "key": key}

    async def keys(self, tenant: str | None, *, include_revoked: bool) -> list[dict[str, Any]]:
        """Keys of one tenant (every tenant when None), oldest first."""
        q = select(ApiKey).order_by(ApiKey.id)
        if tenant is not None:
            q = q.where(ApiKey.namespace == tenant)
        if not include_revoked:
            q = q.where(ApiKey.revoked_at.is_(None))
        async with self.engine.connect() as conn:
            return [key_view(k) for k in (await conn.execute(q)).all()]

    async def _live_key(self, conn: AsyncConnection, key_id: int, tenant: str | None) -> Any:
        q = select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).with_for_update()
        if tenant is not None:
            q = q.where(ApiKey.namespace == tenant)
        row = (await conn.execute(q)).first()
        if row is None:
            raise NotFound(f"no live key with id {key_id}")
        return row

    async def revoke(self, caller: Caller, key_id: int, tenant: str | None) -> tuple[dict[str, Any], str]:
        """Revoke a key (of `tenant` unless None); return its view and its digest (to drop from caches)."""
        async with self.engine.begin() as conn:
            row = await self._live_key(conn, key_id, tenant)
            await conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=datetime.now(UTC)))
            await record(conn, Change(caller, "keys.revoke", f"key/{key_id}", namespace=row.namespace,
                                      detail={"name": row.name, "role": row.role}))
            await announce_revoked(conn, row.key_hash)
            done = (await conn.execute(select(ApiKey).where(ApiKey.id == key_id))).one()
        return key_view(done), row.key_hash

    async def rotate(self, caller: Caller, key_id: int, tenant: str | None) -> tuple[dict[str, Any], str]:
        """Revoke a key and create its successor (same tenant, role, name and expiry) in one transaction."""
        async with self.engine.begin() as conn:
            row = await self._live_key(conn, key_id, tenant)
            if row.expires_at is not None and row.expires_at <= datetime.now(UTC):
                raise Conflict(f"key {key_id} expired at {row.expires_at.isoformat()}; its successor would be "
                               "expired too: create a new key with POST /v1/keys")
            await conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=datetime.now(UTC)))
            await announce_revoked(conn, row.key_hash)
            out = await self._insert_key(conn, caller, tenant=row.namespace, role=Role[row.role], name=row.name,
                                         expires_at=row.expires_at)
            await record(conn, Change(caller, "keys.rotate", f"key/{key_id}", namespace=row.namespace,
                                      detail={"name": row.name, "new_key_id": out["id"]}))
        return {**out, "replaces": key_id}, row.key_hash
