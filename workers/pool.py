"""One worker process: a Celery worker whose pool is gevent greenlets, so one process keeps hundreds of runs
in flight. A turn spends nearly all its time waiting on the model's socket; a greenlet waiting costs a few
kilobytes where a prefork process costs about 110 MB.

A process has a role: `runs` consumes the runs' queue and the sweeps' (`--concurrency` runs in flight);
`ingest` consumes only the ingestion queue, `--concurrency` chunk sets at once (ORCHESTRATOR_INGEST_CONCURRENCY,
a few), so ingestion holds a few database connections of its own and never a run's place in a pool.

gevent must patch the standard library before anything else is imported, so this module is the process's
entry point (`python -m workers.pool`), started by `orchestrator worker` and never imported by it.
psycopg 3, redis-py, the SDK's HTTP client and SQLAlchemy's pool all wait cooperatively once patched.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import sys  # noqa: E402

from orchestrator.settings import Settings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workers.pool")
    parser.add_argument("--concurrency", type=int, required=True, help="runs this process keeps in flight")
    parser.add_argument("--index", type=int, default=0, help="this process's place among its siblings")
    parser.add_argument("--role", choices=("runs", "ingest"), default="runs")
    args = parser.parse_args(argv)
    settings = for_process(Settings(), args.concurrency, args.role)
    from orchestrator.observability import logs

    logs.configure(settings, role="worker")
    announce_sandbox(settings)
    from orchestrator.observability.turns import record_takeovers
    from workers.celery_app import create_celery

    record_takeovers(0)  # the process's takeover count is exported (as 0) from its start
    app = create_celery(settings)
    # kombu's Redis connections for this process's acks and publishes: one per task that may end at once
    # (its default, 10, refused the eleventh with "Too many connections").
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "max_connections": args.concurrency + 10,
    }
    if args.role == "ingest":
        from workers import ingest_process

        ingest_process.prepare()
    from workers import tasks

    tasks.warm_up(args.role)
    app.worker_main(
        [
            "worker",
            "--pool=gevent",
            f"--concurrency={args.concurrency}",
            f"--hostname=orchestrator-{'ingest-' if args.role == 'ingest' else ''}{args.index}@%h",
            "--loglevel",
            settings.log_level,
            "-Q",
            ",".join(queues(settings, args.role)),
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


def queues(settings: Settings, role: str) -> list[str]:
    from orchestrator.adapters.celery_queue import ingest_queue, sweep_queue

    if role == "ingest":
        return [ingest_queue(settings.celery_queue)]
    return [settings.celery_queue, sweep_queue(settings.celery_queue)]


def announce_sandbox(settings: Settings) -> None:
    """Say at start-up where code_interpreter code runs, or that it cannot run here."""
    import logging

    from orchestrator.sandbox.factory import describe

    ready, where = describe(settings)
    logger = logging.getLogger("workers.pool")
    if ready and settings.sandbox_url:
        logger.info(where)
    else:
        logger.warning(where)


def for_process(settings: Settings, concurrency: int, role: str = "runs") -> Settings:
    """The settings one worker process runs with: model connections sized for its runs in flight; the
    ingestion process's database pool large enough for its chunk sets in flight and the lease keeper."""
    update = {}
    if not settings.upstream_max_connections:
        update["upstream_max_connections"] = concurrency
    if role == "ingest":
        update["db_pool_size"] = max(settings.db_pool_size, concurrency + 2)
    return settings.model_copy(update=update)


if __name__ == "__main__":
    sys.exit(main())
