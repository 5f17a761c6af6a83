"""Object ids with the OpenAI prefixes."""

import secrets

PREFIXES = ("asst", "thread", "msg", "run", "step", "call", "tenant", "key", "file", "vs", "vsfb", "cs")


def new_id(prefix: str, separator: str = "_") -> str:
    """`prefix_…`; file ids are `file-…` as OpenAI's are (separator "-")."""
    return f"{prefix}{separator}{secrets.token_urlsafe(18).replace('-', 'A').replace('_', 'B')}"


def has_prefix(object_id: str, prefix: str) -> bool:
    return object_id.startswith(prefix + "_")
