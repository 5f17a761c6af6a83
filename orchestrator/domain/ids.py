"""Object ids with the OpenAI prefixes."""

import secrets

PREFIXES = ("asst", "thread", "msg", "run", "step", "call", "tenant", "key")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(18).replace('-', 'A').replace('_', 'B')}"


def has_prefix(object_id: str, prefix: str) -> bool:
    return object_id.startswith(prefix + "_")
