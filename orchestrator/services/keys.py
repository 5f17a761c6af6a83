"""Tenants and API keys. Keys are shown once and stored as SHA-256 digests."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

from sqlalchemy import select, update

from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.domain.errors import NotFound, Unauthorized
from orchestrator.domain.ids import new_id


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(ctx: Context, tenant_name: str) -> tuple[str, str]:
    """Create the tenant if needed and a new key for it. Returns (tenant_id, key)."""
    key = "sk-" + secrets.token_urlsafe(32)
    with ctx.uow() as uow:
        tenant = uow.session.scalar(select(models.Tenant).where(models.Tenant.name == tenant_name))
        if tenant is None:
            tenant = models.Tenant(id=new_id("tenant"), name=tenant_name, created_at=ctx.timestamp())
            uow.session.add(tenant)
            uow.session.flush()
        uow.session.add(
            models.ApiKey(
                id=new_id("key"),
                tenant_id=tenant.id,
                key_hash=digest(key),
                hint=key[:7],
                created_at=ctx.timestamp(),
            )
        )
        uow.commit()
        return tenant.id, key


def list_keys(ctx: Context, tenant_name: str | None = None) -> list[dict]:
    with ctx.uow() as uow:
        statement = select(models.ApiKey, models.Tenant.name).join(models.Tenant)
        if tenant_name:
            statement = statement.where(models.Tenant.name == tenant_name)
        rows = uow.session.execute(statement.order_by(models.ApiKey.created_at))
        return [
            {
                "id": key.id,
                "tenant": name,
                "hint": key.hint + "…",
                "created_at": key.created_at,
                "revoked": key.revoked_at is not None,
            }
            for key, name in rows
        ]


def revoke_key(ctx: Context, key_id: str) -> None:
    with ctx.uow() as uow:
        result = uow.session.execute(
            update(models.ApiKey)
            .where(models.ApiKey.id == key_id, models.ApiKey.revoked_at.is_(None))
            .values(revoked_at=ctx.timestamp())
        )
        if result.rowcount != 1:
            raise NotFound(f"No active key found with id '{key_id}'.")
        uow.commit()


class Authenticator:
    """Key → tenant, with a short cache so the hot path does not hit Postgres on every request.

    A revoked key stops working within `ttl` seconds.
    """

    def __init__(self, ctx: Context, ttl: float = 5.0):
        self._ctx = ctx
        self._ttl = ttl
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def tenant_for(self, key: str | None) -> str:
        if not key:
            raise Unauthorized(
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the api-key header.",
            )
        hashed = digest(key)
        with self._lock:
            cached = self._cache.get(hashed)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        tenant_id = self._lookup(hashed)
        if tenant_id is None:
            raise Unauthorized(f"Incorrect API key provided: {_redact(key)}.", code="invalid_api_key")
        with self._lock:
            self._cache[hashed] = (tenant_id, time.monotonic() + self._ttl)
        return tenant_id

    def _lookup(self, hashed: str) -> str | None:
        with self._ctx.uow() as uow:
            return uow.session.scalar(
                select(models.ApiKey.tenant_id).where(
                    models.ApiKey.key_hash == hashed, models.ApiKey.revoked_at.is_(None)
                )
            )


def _redact(key: str) -> str:
    return key[:3] + "*" * 4 + key[-4:] if len(key) > 8 else "*" * len(key)
