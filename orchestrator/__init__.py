"""Self-hosted, durable backend for the OpenAI Assistants API v2 runs lifecycle."""
