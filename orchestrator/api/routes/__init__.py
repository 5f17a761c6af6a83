"""Blueprints, one per resource. All are mounted under /v1 (OpenAI) and /openai (Azure)."""
