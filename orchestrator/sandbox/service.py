"""`orchestrator sandbox`: the jail served over HTTP to the workers (wire.py has the routes).

One gunicorn worker process with a thread per request: the sessions live in that process's memory, so
there is exactly one. It holds no database or Redis credentials and needs none; every request but
/healthz must carry `Authorization: Bearer $ORCHESTRATOR_SANDBOX_TOKEN`.
"""

from __future__ import annotations

import hmac
import logging

from flask import Flask, Response, json, request
from gunicorn.app.base import BaseApplication
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from orchestrator.domain.errors import InvalidRequest, OrchestratorError, SandboxUnavailable, Unauthorized
from orchestrator.observability.gunicorn_logs import ProcessLogger
from orchestrator.sandbox.local import LocalSandbox, MissingFiles
from orchestrator.sandbox.runtime import Runtime
from orchestrator.sandbox.wire import CloseRequest, ExecuteRequest, execution_to_wire
from orchestrator.settings import Settings

log = logging.getLogger(__name__)


def create_service(settings: Settings, sandbox: LocalSandbox) -> Flask:
    app = Flask("orchestrator.sandbox")
    # Input files arrive base64-encoded (4/3 of their size); together they cannot exceed /mnt/data.
    app.config["MAX_CONTENT_LENGTH"] = int(settings.code_disk_bytes) * 4 // 3 + (16 << 20)
    app.extensions["sandbox"] = sandbox
    token = settings.sandbox_token
    if not token:
        raise ValueError("the sandbox service needs ORCHESTRATOR_SANDBOX_TOKEN")

    @app.before_request
    def _authenticate():
        if request.path == "/healthz":
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise Unauthorized("Missing or wrong sandbox token.", code="invalid_token")
        return None

    @app.get("/healthz")
    def _health():
        return {"status": "ok", "sessions": len(sandbox.sessions)}

    @app.post("/v1/execute")
    def _execute():
        body = _parse(ExecuteRequest)
        try:
            files = [f.to_file() for f in body.files]
        except ValueError as error:
            raise InvalidRequest(str(error), param="files") from None
        try:
            execution = sandbox.run(body.session_id, body.code, files)
        except MissingFiles as missing:
            return _missing(missing)
        return execution_to_wire(execution)

    @app.post("/v1/close")
    def _close():
        sandbox.close(_parse(CloseRequest).session_id)
        return Response(status=204)

    app.register_error_handler(OrchestratorError, _error)
    app.register_error_handler(HTTPException, _http_error)
    return app


def _parse(model):
    try:
        return model.model_validate(request.get_json(force=True, silent=False))
    except ValidationError as error:
        raise InvalidRequest(f"Invalid request body: {error.errors()[0]['msg']}") from None


def _missing(missing: MissingFiles) -> Response:
    error = InvalidRequest(str(missing), param="files", code="files_missing")
    body = {**error.envelope(), "missing": missing.names}
    return Response(json.dumps(body), status=409, mimetype="application/json")


def _error(error: OrchestratorError) -> Response:
    response = Response(json.dumps(error.envelope()), status=error.status, mimetype="application/json")
    if error.retryable:
        response.headers["Retry-After"] = "1"
    return response


def _http_error(error: HTTPException) -> Response:
    wrapped = OrchestratorError(error.description or error.name)
    wrapped.status, wrapped.type = error.code or 400, "invalid_request_error"
    return _error(wrapped)


class _Server(BaseApplication):
    def __init__(self, settings: Settings, options: dict, runtime: Runtime):
        self._settings = settings
        self._options = options
        self._runtime = runtime
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        # In the worker process, after fork: the sessions belong to it.
        return create_service(self._settings, LocalSandbox(self._settings, runtime=self._runtime))


def _worker_exit(_server, worker) -> None:
    sandbox = getattr(worker, "wsgi", None) and worker.wsgi.extensions.get("sandbox")
    if sandbox is not None:
        sandbox.shutdown()


def serve(settings: Settings, *, host: str, port: int) -> None:
    """Check that a jail can be made here, then serve until SIGTERM."""
    if not settings.sandbox_token:
        raise SystemExit("orchestrator sandbox: set ORCHESTRATOR_SANDBOX_TOKEN (the workers send it too)")
    checked = LocalSandbox(settings)
    try:
        checked.check()  # also finds the cgroups, before the worker process is forked (cgroup.py)
    except SandboxUnavailable as error:
        raise SystemExit(f"orchestrator sandbox: {error.message}") from None
    log.info("code sandbox ready: %s", checked.walls.describe())
    threads = settings.code_concurrency * 2 + 4  # those running, as many waiting, and a few for /healthz
    options = {
        "bind": f"{host}:{port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 30,
        "graceful_timeout": int(settings.code_timeout_seconds) + 10,
        "keepalive": 5,
        "control_socket_disable": True,
        "accesslog": None,
        "loglevel": settings.log_level.lower(),
        "logger_class": ProcessLogger,
        "worker_exit": _worker_exit,
    }
    _Server(settings, options, checked.runtime).run()  # the runtime is asked once, here
