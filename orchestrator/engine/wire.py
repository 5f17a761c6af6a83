"""Rows to the exact JSON objects of the contract (§3). Shared by the API and the run events."""

from __future__ import annotations

from orchestrator.db import models
from orchestrator.domain import hosted_tools


def assistant(row: models.Assistant) -> dict:
    return {
        "id": row.id,
        "object": "assistant",
        "created_at": row.created_at,
        "name": row.name,
        "description": row.description,
        "model": row.model,
        "instructions": row.instructions,
        "tools": row.tools,
        "tool_resources": row.tool_resources or {},
        "metadata": row.metadata_,
        "temperature": row.temperature,
        "top_p": row.top_p,
        "response_format": row.response_format,
        "reasoning_effort": row.reasoning_effort,
    }


def thread(row: models.Thread) -> dict:
    return {
        "id": row.id,
        "object": "thread",
        "created_at": row.created_at,
        "metadata": row.metadata_,
        "tool_resources": row.tool_resources or {},
    }


def message(row: models.Message) -> dict:
    return {
        "id": row.id,
        "object": "thread.message",
        "created_at": row.created_at,
        "thread_id": row.thread_id,
        "status": row.status,
        "incomplete_details": row.incomplete_details,
        "completed_at": row.completed_at,
        "incomplete_at": row.incomplete_at,
        "role": row.role,
        "content": row.content,
        "assistant_id": row.assistant_id,
        "run_id": row.run_id,
        "attachments": row.attachments,
        "metadata": row.metadata_,
    }


def run(row: models.Run) -> dict:
    return {
        "id": row.id,
        "object": "thread.run",
        "created_at": row.created_at,
        "thread_id": row.thread_id,
        "assistant_id": row.assistant_id,
        "status": row.status,
        "required_action": row.required_action,
        "last_error": row.last_error,
        "expires_at": row.expires_at,
        "started_at": row.started_at,
        "cancelled_at": row.cancelled_at,
        "failed_at": row.failed_at,
        "completed_at": row.completed_at,
        "incomplete_details": row.incomplete_details,
        "model": row.model,
        "instructions": row.instructions,
        "tools": row.tools,
        "metadata": row.metadata_,
        "usage": row.usage,
        "temperature": row.temperature,
        "top_p": row.top_p,
        "max_prompt_tokens": row.max_prompt_tokens,
        "max_completion_tokens": row.max_completion_tokens,
        "truncation_strategy": row.truncation_strategy,
        "tool_choice": row.tool_choice,
        "parallel_tool_calls": row.parallel_tool_calls,
        "response_format": row.response_format,
        "reasoning_effort": row.reasoning_effort,
    }


def step(row: models.RunStep, *, search_content: bool = False) -> dict:
    """A step as the API shows it; file_search result content only when asked for (`include[]`)."""
    return {
        "id": row.id,
        "object": "thread.run.step",
        "created_at": row.created_at,
        "assistant_id": row.assistant_id,
        "thread_id": row.thread_id,
        "run_id": row.run_id,
        "type": row.type,
        "status": row.status,
        "step_details": hosted_tools.public(row.step_details, with_content=search_content),
        "last_error": row.last_error,
        "expired_at": row.expired_at,
        "cancelled_at": row.cancelled_at,
        "failed_at": row.failed_at,
        "completed_at": row.completed_at,
        "metadata": row.metadata_,
        "usage": row.usage,
    }


def deleted(object_id: str, kind: str) -> dict:
    return {"id": object_id, "object": f"{kind}.deleted", "deleted": True}
