"""The Celery app and its thin tasks; they receive ids and call orchestrator services."""
