"""Object ids with the OpenAI prefixes."""

import re
import secrets

PREFIXES = ("asst", "thread", "msg", "run", "step", "call", "tenant", "key", "file", "vs", "vsfb", "cs")
MAX_ID_LENGTH = 64
_PLAIN = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}")


def new_id(prefix: str, separator: str = "_") -> str:
    """`prefix_…`; file ids are `file-…` as OpenAI's are (separator "-")."""
    return f"{prefix}{separator}{secrets.token_urlsafe(18).replace('-', 'A').replace('_', 'B')}"


def has_prefix(object_id: str, prefix: str) -> bool:
    return object_id.startswith(prefix + "_")


def plain_id(object_id: str) -> bool:
    """Letters, digits, '-' and '_', 1 to 64 of them: what an id column holds and a URL path carries."""
    return _PLAIN.fullmatch(object_id) is not None
