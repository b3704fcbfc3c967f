"""Engines and sessions; created inside each process, never pickled."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker


def normalise_url(url: str) -> str:
    """Make any PostgreSQL URL use the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def libpq_url(url: str) -> str:
    """The same URL for psycopg/libpq itself (no SQLAlchemy driver suffix)."""
    url = normalise_url(url)
    return "postgresql://" + url[len("postgresql+psycopg://"):] if url.startswith("postgresql+psycopg://") else url


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """A synchronous engine."""
    return create_engine(normalise_url(url), pool_size=pool_size, max_overflow=10, pool_pre_ping=True)


def make_async_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncio engine (psycopg 3 async)."""
    # no pre-ping (it costs a round trip per checkout on the hot path); recycle instead
    return create_async_engine(normalise_url(url), pool_size=pool_size, max_overflow=10, pool_recycle=1800)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """A session factory that keeps objects readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
