"""What a dead worker had already streamed of a message, recovered from the delta replay buffer, so a run
ended by someone else (cancel, expiry, failure) keeps the partial text its watchers saw."""

from __future__ import annotations

from orchestrator.context import Context
from orchestrator.domain.storable import storable


def streamed_content(ctx: Context, run_id: str, message_id: str | None) -> list[dict] | None:
    if message_id is None:
        return None
    # Workers publish deltas already storable (domain/storable.py); what Redis replays is checked again all
    # the same, since an ending that can never be written would leave the run unexpirable.
    text = storable(
        "".join(
            part.get("text", {}).get("value", "")
            for event in ctx.bus.deltas(run_id)
            if event["event"] == "thread.message.delta" and event["data"]["id"] == message_id
            for part in event["data"]["delta"].get("content", [])
        )
    )
    return [{"type": "text", "text": {"value": text, "annotations": []}}] if text else None
