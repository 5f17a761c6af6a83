"""The domain: statuses, transitions, errors and ids. Imports no Flask, SQLAlchemy, Redis or Celery."""
