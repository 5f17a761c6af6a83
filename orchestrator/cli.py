"""The `orchestrator` command: the composition root that starts every process."""

from __future__ import annotations

import argparse
import os
import sys

from orchestrator.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    settings = Settings()
    from orchestrator.observability import logs

    logs.configure(settings, role=args.handler.__name__.lstrip("_"))
    return args.handler(settings, args) or 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    sub = commands.add_parser("migrate", help="upgrade the database schema to head")
    sub.set_defaults(handler=_migrate)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(required=True, metavar="ACTION")
    sub = keys.add_parser("create", help="create a key (and the tenant if needed); prints the key last")
    sub.add_argument("--tenant", required=True)
    sub.set_defaults(handler=_keys_create)
    sub = keys.add_parser("list", help="list keys (never the keys themselves)")
    sub.add_argument("--tenant")
    sub.set_defaults(handler=_keys_list)
    sub = keys.add_parser("revoke", help="revoke a key by id")
    sub.add_argument("key_id")
    sub.set_defaults(handler=_keys_revoke)

    tenants = commands.add_parser("tenants", help="manage tenants' limits").add_subparsers(
        required=True, metavar="ACTION"
    )
    sub = tenants.add_parser("set", help="set a tenant's limits (0 = no limit; an option left out is kept)")
    sub.add_argument("name")
    sub.add_argument("--requests-per-second", type=float, help="API requests per second (0: no limit)")
    sub.add_argument("--max-active-runs", type=int, help="runs active at once (0: no limit)")
    sub.set_defaults(handler=_tenants_set)
    sub = tenants.add_parser("list", help="list tenants with their limits")
    sub.set_defaults(handler=_tenants_list)

    sub = commands.add_parser("api", help="serve the HTTP API under gunicorn")
    sub.add_argument("--host", default="0.0.0.0")
    sub.add_argument("--port", type=int, default=8000)
    sub.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    sub.set_defaults(handler=_api)

    sub = commands.add_parser("worker", help="run the Celery worker processes that advance runs")
    sub.add_argument(
        "--concurrency", type=int, default=200, help="runs in flight, all processes together (default 200)"
    )
    sub.add_argument(
        "--processes", type=int, default=1, help="worker processes sharing --concurrency (default 1)"
    )
    sub.add_argument(
        "--metrics-port", type=int, default=0, help="serve this worker's Prometheus metrics here (0: off)"
    )
    sub.set_defaults(handler=_worker)

    sub = commands.add_parser(
        "sandbox", help="run code_interpreter code in jails for the workers (holds no database or Redis)"
    )
    sub.add_argument("--host", default="0.0.0.0")
    sub.add_argument("--port", type=int, default=8100)
    sub.set_defaults(handler=_sandbox)

    sub = commands.add_parser("scheduler", help="run the periodic sweeps (Celery beat)")
    sub.set_defaults(handler=_scheduler)

    sub = commands.add_parser("dev", help="everything in one process on embedded defaults")
    sub.add_argument("--port", type=int, default=8000)
    sub.add_argument("--data-dir", default="./data")
    sub.set_defaults(handler=_dev)
    return parser


def _migrate(settings: Settings, _args) -> None:
    from orchestrator.db.migrate import upgrade

    upgrade(settings.database_url)
    print("database is at head")


def _keys_create(settings: Settings, args) -> None:
    from orchestrator.services.keys import create_key

    tenant_id, key = create_key(_plain_context(settings), args.tenant)
    print(f"tenant {args.tenant} ({tenant_id})")
    print(key)


def _keys_list(settings: Settings, args) -> None:
    from orchestrator.services.keys import list_keys

    for key in list_keys(_plain_context(settings), args.tenant):
        state = "revoked" if key["revoked"] else "active"
        print(f"{key['id']}\t{key['tenant']}\t{key['hint']}\t{state}")


def _keys_revoke(settings: Settings, args) -> int:
    from orchestrator.domain.errors import NotFound
    from orchestrator.services.keys import revoke_key

    try:
        revoke_key(_plain_context(settings), args.key_id)
    except NotFound as error:
        print(error.message, file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}")
    return 0


def _tenants_set(settings: Settings, args) -> int:
    from orchestrator.domain.errors import OrchestratorError
    from orchestrator.services.tenants import set_limits

    try:
        limits = set_limits(
            _plain_context(settings),
            args.name,
            requests_per_second=args.requests_per_second,
            max_active_runs=args.max_active_runs,
        )
    except OrchestratorError as error:
        print(error.message, file=sys.stderr)
        return 1
    print(f"{args.name}\trequests/s {limits.requests_per_second:g}\tmax active runs {limits.max_active_runs}")
    return 0


def _tenants_list(settings: Settings, _args) -> None:
    from orchestrator.services.tenants import list_tenants

    print("name\tid\trequests_per_second\tmax_active_runs\tactive_keys")
    for tenant in list_tenants(_plain_context(settings)):
        print(
            f"{tenant['name']}\t{tenant['id']}\t{tenant['requests_per_second']:g}\t"
            f"{tenant['max_active_runs']}\t{tenant['active_keys']}"
        )


def _api(settings: Settings, args) -> None:
    from orchestrator.observability.metrics import use_multiprocess_dir

    use_multiprocess_dir(settings, "api")  # before anything imports prometheus_client
    from orchestrator.api.server import serve

    _check_models_file(settings)
    serve(settings, host=args.host, port=args.port, workers=args.workers)


def _worker(settings: Settings, args) -> int:
    from orchestrator.observability import metrics

    metrics_dir = metrics.use_multiprocess_dir(settings, "worker")  # inherited by the worker processes
    _check_models_file(settings)
    from workers import supervisor

    processes = supervisor.plan(args.concurrency, args.processes, settings.ingest_concurrency)
    if args.metrics_port:  # this process serves the metrics: it supervises too
        metrics.serve(settings, "0.0.0.0", args.metrics_port)
        return supervisor.Supervisor(processes, settings.redis_url).run()
    # The lean supervisor in this process's place (workers/supervisor.py); it removes the metrics directory
    # when it ends, which this process's exit would have done.
    command = supervisor.command(processes, settings.log_level, settings.log_format, metrics_dir)
    environment = {**os.environ, supervisor.BROKER_ENV: settings.redis_url}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, environment)
    return 1  # not reached: execve returns only by raising


def _scheduler(settings: Settings, _args) -> None:
    from workers.celery_app import create_celery

    app = create_celery(settings)
    app.start(["beat", "--loglevel", settings.log_level])  # the schedule in memory: workers/celery_app.py


def _sandbox(settings: Settings, args) -> None:
    from orchestrator.sandbox.service import serve

    serve(settings, host=args.host, port=args.port)


def _dev(settings: Settings, args) -> int:
    from orchestrator.embedded import run_dev

    return run_dev(settings, port=args.port, data_dir=args.data_dir)


def _check_models_file(settings: Settings) -> None:
    """A bad ORCHESTRATOR_MODELS_FILE stops the process at start-up rather than failing every run."""
    from orchestrator.providers.model_routes import RoutesError, validate

    try:
        validate(settings)
    except RoutesError as error:
        raise SystemExit(f"orchestrator: {error}") from None


def _plain_context(settings: Settings):
    """A context for one-shot CLI commands: only the database is needed."""
    from orchestrator.adapters.ports import InMemoryBus, InMemoryQueue
    from orchestrator.context import Context
    from orchestrator.db.connection import make_engine, make_sessionmaker

    engine = make_engine(settings, pool_size=1)
    return Context(settings, make_sessionmaker(engine), InMemoryQueue(), InMemoryBus())


if __name__ == "__main__":
    sys.exit(main())
