"""Typed settings, read once at start-up and passed down. Nothing else reads os.environ."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")

    database_url: str = Field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/orchestrator",
        validation_alias=AliasChoices("DATABASE_URL", "ORCHESTRATOR_DATABASE_URL"),
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "ORCHESTRATOR_REDIS_URL"),
    )
    # The upstream model endpoint; the openai SDK's own variable names.
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    openai_api_key: str | None = Field(default=None, validation_alias="OPENAI_API_KEY")

    run_expires_seconds: int = 600
    lease_seconds: float = 30.0
    local_model_delay_ms: int = 0
    sweep_interval_seconds: float = 2.0
    # A queued run nobody has claimed for this long is assumed to have lost its queue message.
    requeue_after_seconds: float = 10.0
    poll_after_ms: int = 100
    max_body_bytes: int = 4 * 1024 * 1024
    keepalive_seconds: float = 15.0
    delta_replay_seconds: int = 3600
    models_file: str | None = None
    log_level: str = "INFO"
    celery_queue: str = "orchestrator"
