"""The tenant's request rate, checked on every authenticated request: over it, a 429 envelope with
`Retry-After` (and `retry-after-ms`), which the SDK honours and retries by itself."""

from __future__ import annotations

from flask import current_app

from orchestrator.api.auth import tenant
from orchestrator.context import Context
from orchestrator.domain.errors import RateLimited


def init_app(app, context: Context) -> None:
    app.extensions["limits"] = context.tenant_limits
    app.extensions["limiter"] = context.rate_limiter


def admit() -> None:
    """A before_request hook, after authentication."""
    tenant_id = tenant()
    rate = current_app.extensions["limits"].get(tenant_id).requests_per_second
    if not rate:
        return
    wait = current_app.extensions["limiter"].admit(tenant_id, rate)
    if wait > 0:
        raise RateLimited(
            f"Rate limit reached for requests: {rate:g} per second. Please try again in {wait:.3g}s.",
            retry_after=wait,
        )
