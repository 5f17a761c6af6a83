"""Access to the per-process service context from views."""

from flask import current_app

from orchestrator.context import Context


def ctx() -> Context:
    return current_app.extensions["orchestrator"]
