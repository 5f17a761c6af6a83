"""Adapters: the ports (queue, event bus, model provider) and their real and in-memory implementations."""
