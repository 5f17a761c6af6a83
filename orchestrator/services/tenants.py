"""Tenants and their limits: a request rate (enforced by the API, see orchestrator/api/limits.py) and a
number of active runs (for the run engine). 0 means no limit; a tenant nobody set limits for has none."""

from __future__ import annotations

from sqlalchemy import func, select

from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.db.tenants import Limits
from orchestrator.domain.errors import InvalidRequest, NotFound


def set_limits(
    ctx: Context, name: str, *, requests_per_second: float | None = None, max_active_runs: int | None = None
) -> Limits:
    """Set either or both limits of the tenant called `name` (the other keeps its value)."""
    if requests_per_second is not None and not 0 <= requests_per_second < 1e6:
        raise InvalidRequest("requests per second must be from 0 (no limit) to below 1,000,000")
    if max_active_runs is not None and not 0 <= max_active_runs < 2**31:
        raise InvalidRequest("max active runs must be 0 (no limit) or more")
    with ctx.uow() as uow:
        tenant_id = uow.session.scalar(select(models.Tenant.id).where(models.Tenant.name == name))
        if tenant_id is None:
            raise NotFound(
                f"No tenant named '{name}' (`orchestrator keys create --tenant {name}` makes one)."
            )
        row = uow.session.get(models.TenantLimits, tenant_id, with_for_update=True)
        if row is None:
            row = models.TenantLimits(tenant_id=tenant_id, requests_per_second=0.0, max_active_runs=0)
            uow.session.add(row)
        if requests_per_second is not None:
            row.requests_per_second = requests_per_second
        if max_active_runs is not None:
            row.max_active_runs = max_active_runs
        row.updated_at = ctx.timestamp()
        uow.commit()
        return Limits(row.requests_per_second, row.max_active_runs)


def list_tenants(ctx: Context) -> list[dict]:
    """Every tenant with its limits and key count, by name."""
    keys = (
        select(models.ApiKey.tenant_id, func.count().label("keys"))
        .where(models.ApiKey.revoked_at.is_(None))
        .group_by(models.ApiKey.tenant_id)
        .subquery()
    )
    statement = (
        select(models.Tenant, models.TenantLimits, keys.c["keys"])
        .outerjoin(models.TenantLimits, models.TenantLimits.tenant_id == models.Tenant.id)
        .outerjoin(keys, keys.c.tenant_id == models.Tenant.id)
        .order_by(models.Tenant.name)
    )
    with ctx.uow() as uow:
        return [
            {
                "id": tenant.id,
                "name": tenant.name,
                "requests_per_second": limits.requests_per_second if limits else 0.0,
                "max_active_runs": limits.max_active_runs if limits else 0,
                "active_keys": count or 0,
            }
            for tenant, limits, count in uow.session.execute(statement)
        ]
