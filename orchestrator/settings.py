"""Typed settings, read once at start-up and passed down. Nothing else reads os.environ."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, ByteSize, Field
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
    # A pause before the local model's first chunk, to stand in for a slow model.
    local_model_first_token_ms: int = 0
    # The local model's context window (Responses' `truncation`: refused or truncated beyond it).
    local_model_context_tokens: int = Field(default=128_000, gt=0)
    sweep_interval_seconds: float = 2.0
    # A queued run nobody has claimed for this long is assumed to have lost its queue message.
    requeue_after_seconds: float = 10.0
    poll_after_ms: int = 100
    max_body_bytes: int = 4 * 1024 * 1024
    # The api under gunicorn (orchestrator/api/gunicorn_worker.py): time to send a request line and headers (also
    # the keep-alive idle limit), time to send a whole body, and open connections per client address in
    # one api worker process (0: no cap; behind a proxy every client has the proxy's address).
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    max_connections_per_client: int = Field(default=2000, ge=0)
    keepalive_seconds: float = 15.0
    delta_replay_seconds: int = 3600
    # A YAML or JSON file routing model names to upstream endpoints (docs/models.md).
    models_file: str | None = None
    # Upstream calls: the longest the upstream may stay silent (before the response, or between two
    # chunks), the connect timeout, attempts in all (retries happen only before the first chunk), and
    # the exponential backoff between attempts (first delay, cap; a Retry-After header is honoured
    # up to the cap).
    upstream_timeout_seconds: float = Field(default=120.0, gt=0)
    upstream_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    upstream_attempts: int = Field(default=3, ge=1)
    # Connections each process keeps to one upstream endpoint; 0: as many as the process has runs in flight.
    upstream_max_connections: int = Field(default=0, ge=0)
    upstream_backoff_seconds: float = Field(default=0.5, ge=0)
    upstream_backoff_max_seconds: float = Field(default=8.0, ge=0)
    # Postgres connections each process keeps (as many again may open in a burst). A connection is held only
    # inside a transaction, never while a model is called.
    db_pool_size: int = Field(default=10, ge=1)
    # At most this many of one tenant's runs are handed to workers at once (the rest wait in Postgres, in
    # order), so one tenant's flood cannot hold up another's runs; 0: no window. Keep it below the workers'
    # total --concurrency. A tenant's max_active_runs, when smaller, is its window.
    tenant_window: int = Field(default=100, ge=0)
    log_level: str = "INFO"
    # json: one JSON object per line with tenant/thread/run/step ids; console: for people at a terminal.
    log_format: Literal["json", "console"] = "json"
    # The runs' Celery queue; ingestion and the sweeps have queues of their own beside it, named after it
    # (`<queue>.ingest`, `<queue>.sweep`), so neither waits behind the other.
    celery_queue: str = "orchestrator"
    # Where each api or worker process group keeps its multiprocess metric files (a fresh subdirectory per
    # start, removed at exit); None: the system's temporary directory. A tmpfs is best.
    metrics_dir: str | None = None
    # When set, /metrics (and a worker's --metrics-port) answer only `Authorization: Bearer <token>`.
    metrics_token: str | None = None

    # The code_interpreter sandbox (orchestrator/sandbox, docs/sandbox.md). Workers call the `orchestrator
    # sandbox` service at this URL (several, comma-separated: a session always goes to the same one).
    sandbox_url: str | None = None
    # Without a URL, code runs in a jail inside the worker process itself (beside its database and Redis
    # credentials) only when this is set; otherwise code steps fail, saying why. `orchestrator dev` sets it.
    code_in_process: bool = False
    # The shared secret between workers and the sandbox service; the service refuses to start without it.
    sandbox_token: str | None = None
    # The interpreter code runs with (a venv's bin/python carries its package set); unset: this host's Python
    # runtime, standard library only.
    code_python: str | None = None
    # Limits of one execution (sizes take units: "256MiB", "64KiB"). Wall time and CPU are per execution
    # (a session runs nothing between executions); memory is per process (address space) and for the
    # whole session together (its processes, files in /tmp, /mnt/data and /dev/shm, kernel objects: a cgroup
    # where the host allows one, else its processes sampled); processes counts threads too; file bytes caps
    # each file written; disk bytes caps /mnt/data, /tmp and /dev/shm (each); output bytes caps what it
    # prints; return bytes and return files cap the files and images handed back.
    code_timeout_seconds: float = Field(default=60.0, gt=0)
    code_cpu_seconds: float = Field(default=60.0, gt=0)
    code_memory_bytes: ByteSize = Field(default=ByteSize(1024 * 1024 * 1024), gt=0)
    code_processes: int = Field(default=32, ge=1)
    code_file_bytes: ByteSize = Field(default=ByteSize(256 * 1024 * 1024), gt=0)
    code_disk_bytes: ByteSize = Field(default=ByteSize(512 * 1024 * 1024), gt=0)
    code_output_bytes: ByteSize = Field(default=ByteSize(64 * 1024), gt=0)
    code_return_bytes: ByteSize = Field(default=ByteSize(32 * 1024 * 1024), gt=0)
    code_return_files: int = Field(default=50, ge=1)
    # A memory cgroup per session (sandbox/cgroup.py): auto (where the host allows one), required (refuse to
    # start without), off.
    code_cgroup: Literal["auto", "required", "off"] = "auto"
    # A session (a thread's interpreter, variables and /mnt/data) idle this long is discarded.
    code_session_idle_seconds: float = Field(default=3600.0, gt=0)
    # Live sessions per sandbox process (the least recently used idle one makes room), and executions at once.
    code_max_sessions: int = Field(default=32, ge=1)
    code_concurrency: int = Field(default=4, ge=1)
    # Where the sandbox remembers which sessions it has held, so one lost to a restart says so; unset: a
    # directory under the system's temporary directory.
    code_state_dir: str | None = None
    # Files and vector stores (docs/files.md).
    # Largest file upload; uploads are exempt from max_body_bytes, which bounds JSON bodies.
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    # Where uploaded bytes live: unset, in the database (Postgres, backed up with it); a directory, there.
    # `orchestrator dev` sets it to DATA_DIR/files.
    files_dir: str | None = None
    # The embedding model for semantic search: unset, lexical search only; `local-minilm`, the bundled
    # all-MiniLM-L6-v2 (the `local-embeddings` extra); any other name goes upstream like a chat model.
    embedding_model: str | None = None
    # Where files derived once and reused are kept (the local embedder's query graph, about 43 MB, written on
    # the first search, or by the image's build); unset: $XDG_CACHE_HOME/orchestrator, else
    # ~/.cache/orchestrator. A directory that cannot be written costs each searching process torch's memory.
    cache_dir: str | None = None
    # Parsing an uploaded file runs in a child process with these limits; past them the file is `failed`.
    parse_timeout_seconds: float = Field(default=300.0, gt=0)
    parse_memory_mb: int = Field(default=2048, ge=64)
    # All parsing children on one machine together (a child takes a slot of parse_memory_mb while it runs;
    # the others wait): 0, half of the machine's memory. Slots are lock files in parse_slots_dir (unset: a
    # directory under the system's temporary directory), shared by every worker process of the machine.
    parse_memory_total_mb: int = Field(default=0, ge=0)
    parse_slots_dir: str | None = None
    # Chunk sets one `orchestrator worker` ingests at once: its ingestion process, apart from the processes
    # that advance runs (so ingestion neither takes their database connections nor delays them); 0, none
    # (this worker only advances runs). The ingestion process's database pool is made large enough for them.
    ingest_concurrency: int = Field(default=8, ge=0)
    # Parsing processes each worker process keeps (each about 65 MB when idle; the files beyond wait for one).
    parse_processes: int = Field(default=2, ge=1)
    # A parsing process is replaced after this many files, or once it holds this much memory (its limit
    # for one file is parse_memory_mb all the same).
    parse_recycle_files: int = Field(default=500, ge=1)
    parse_recycle_mb: int = Field(default=256, ge=32)
    # Vectors of searched stores are kept in each process's memory up to this size (least recently used go):
    # about 1,640 bytes per 384-dimension chunk, so the default holds a store of a million
    # (docs/configuration.md).
    vector_cache_mb: int = Field(default=2048, ge=0)
    # Likewise the lexical (BM25) indexes of searched stores: about 500 bytes per 200-token chunk, so the
    # default holds a store of two million (docs/configuration.md).
    lexical_cache_mb: int = Field(default=1024, ge=0)
    # What `ranking_options.ranker` `auto` reranks a search's fused candidates with: `none`, `local-minilm`
    # (the bundled all-MiniLM-L6-v2 scores each candidate against the query), or a models-file route of
    # kind `rerank` / `tei-rerank` (files/rerank.py). The best `rerank_candidates` fused results are rescored.
    rerank_model: str = "local-minilm"
    rerank_candidates: int = Field(default=50, ge=1, le=200)
    # What `rewrite_query: true` rewrites a search's query with: `local` (a fixed rule, files/rewrite.py) or
    # a chat model routed like any other, asked for a search query.
    rewrite_model: str = "local"
