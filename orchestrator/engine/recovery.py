"""What a dead worker had already streamed of a message, recovered from the delta replay buffer, so a run
ended by someone else (cancel, expiry, failure) keeps the images and the partial text its watchers saw."""

from __future__ import annotations

from orchestrator.context import Context
from orchestrator.domain.storable import storable


def streamed_content(ctx: Context, run_id: str, message_id: str | None) -> list[dict] | None:
    if message_id is None:
        return None
    # Workers publish deltas already storable (domain/storable.py); what Redis replays is checked again all
    # the same, since an ending that can never be written would leave the run unexpirable.
    parts = [
        part
        for event in ctx.bus.deltas(run_id)
        if event["event"] == "thread.message.delta" and event["data"]["id"] == message_id
        for part in event["data"]["delta"].get("content", [])
    ]
    images = {
        p["index"]: p["image_file"] for p in parts if p.get("type") == "image_file" and "image_file" in p
    }
    text = storable("".join(part.get("text", {}).get("value", "") for part in parts))
    content = [{"type": "image_file", "image_file": images[index]} for index in sorted(images)]
    content += [{"type": "text", "text": {"value": text, "annotations": []}}] if text else []
    return content or None
