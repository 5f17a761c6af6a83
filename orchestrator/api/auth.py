"""API key → tenant, for both client flavours: `Authorization: Bearer KEY` (OpenAI) or `api-key: KEY` (Azure)."""

from __future__ import annotations

from flask import current_app, g, request


def authenticate() -> None:
    key = request.headers.get("api-key")
    header = request.headers.get("Authorization", "")
    if not key and header[:7].lower() == "bearer ":
        key = header[7:].strip()
    g.tenant_id = current_app.extensions["authenticator"].tenant_for(key)


def tenant() -> str:
    return g.tenant_id
