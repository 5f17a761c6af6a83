"""Metrics and structured logs: configured once per process by the CLI, used by every layer."""
