"""Reading a run's event stream in the background, as a watcher that stays connected would."""

from __future__ import annotations

import threading

import httpx2 as httpx


def watch_in_background(url: str, headers: dict, timeout: float = 90) -> tuple[list[str], threading.Thread]:
    """Start reading the SSE stream at `url`; its non-empty lines accumulate in the returned list."""
    lines: list[str] = []

    def read() -> None:
        with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
            lines.extend(line for line in response.iter_lines() if line)

    watcher = threading.Thread(target=read)
    watcher.start()
    return lines, watcher
