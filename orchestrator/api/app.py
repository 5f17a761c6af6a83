"""The Flask application factory."""

from __future__ import annotations

import secrets

from flask import Blueprint, Flask, Response, g, request

from orchestrator.api import errors, idempotent, limits, observe
from orchestrator.api.auth import authenticate
from orchestrator.api.routes import (
    assistants,
    chat,
    containers,
    conversations,
    files,
    messages,
    meta,
    models,
    ops,
    responses,
    runs,
    steps,
    streams,
    threads,
    ui,
    vector_stores,
)
from orchestrator.api.sse import Drain
from orchestrator.context import Context
from orchestrator.domain.errors import IdempotencyKeyTaken, UpstreamError
from orchestrator.services.keys import Authenticator
from orchestrator.settings import Settings

RESOURCES = (
    assistants.bp,
    threads.bp,
    messages.bp,
    runs.bp,
    steps.bp,
    streams.bp,
    files.bp,
    vector_stores.bp,
)
# The Responses face: under the prefixes above, and also under Azure's v1 path (/openai/v1/…, no
# api-version needed), which serves nothing else.
RESPONSES_FACE = (responses.bp, conversations.bp, containers.bp)


class OrchestratorFlask(Flask):
    def make_default_options_response(self) -> Response:
        """OPTIONS answers the methods of the route the path names. Werkzeug's default adds those of every
        pattern the path also fits: `/threads/runs` fits `/threads/<thread_id>` (GET, POST, DELETE)."""
        named = request.url_rule.rule
        response = self.response_class()
        response.allow.update(
            m for rule in self.url_map.iter_rules() if rule.rule == named for m in rule.methods
        )
        return response


def create_app(settings: Settings | None = None, context: Context | None = None) -> Flask:
    settings = settings or Settings()
    if context is None:
        from orchestrator.bootstrap import build_context

        context = build_context(settings)
    app = OrchestratorFlask("orchestrator", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["orchestrator"] = context
    app.extensions["authenticator"] = Authenticator(context)
    app.extensions["hub"] = context.hub
    app.extensions["drain"] = Drain()
    limits.init_app(app, context)
    errors.init_app(app)
    app.register_blueprint(meta.bp)
    app.register_blueprint(ops.bp)
    ui.init_app(app)
    api = _api_blueprint("api", RESOURCES + RESPONSES_FACE)
    # One implementation, two URL shapes: the OpenAI client's /v1 and the Azure client's /openai.
    app.register_blueprint(api, url_prefix="/v1", name="v1")
    app.register_blueprint(api, url_prefix="/openai", name="azure")
    # The SDK sends assistants calls to /openai/... even with azure_deployment set; only a client given
    # base_url=".../openai/deployments/{name}" itself sends them under it. Same routes; the assistant's
    # model decides, so the deployment name is dropped.
    app.register_blueprint(api, url_prefix="/openai/deployments/<azure_deployment>", name="azure_deployment")
    # The relayed model APIs (chat completions, embeddings, models): the same walls, but no idempotency
    # keys, since they store nothing. Under a deployment path the deployment names the model.
    relay = _relay_blueprint()
    for prefix, name in RELAY_PREFIXES:
        app.register_blueprint(relay, url_prefix=prefix, name=name)
    app.url_value_preprocessor(_drop_deployment)
    app.register_blueprint(_api_blueprint("api_v1", RESPONSES_FACE), url_prefix="/openai/v1", name="azure_v1")
    app.before_request(_request_id)
    observe.init_app(app)
    app.after_request(_headers)
    return app


def _api_blueprint(name: str, resources: tuple[Blueprint, ...]) -> Blueprint:
    """The resources behind the API's per-request steps (auth, ids in logs, limits, idempotency)."""
    api = Blueprint(name, __name__)
    api.before_request(authenticate)
    api.before_request(observe.bind_ids)
    api.before_request(limits.admit)
    api.before_request(idempotent.begin)
    api.after_request(idempotent.finish)
    api.register_error_handler(IdempotencyKeyTaken, idempotent.taken)
    api.teardown_request(idempotent.forget)
    for resource in resources:
        api.register_blueprint(resource)
    return api


RELAY_PREFIXES = (
    ("/v1", "relay_v1"),
    ("/openai", "relay_azure"),
    ("/openai/deployments/<azure_deployment>", "relay_azure_deployment"),
    ("/openai/v1", "relay_azure_v1"),
)


def _relay_blueprint() -> Blueprint:
    relay = Blueprint("relay", __name__)
    relay.before_request(authenticate)
    relay.before_request(observe.bind_ids)
    relay.before_request(limits.admit)
    relay.register_error_handler(UpstreamError, lambda error: errors.error_response(error, error.headers))
    relay.register_blueprint(chat.bp)
    relay.register_blueprint(models.bp)
    return relay


def _drop_deployment(_endpoint: str | None, values: dict | None) -> None:
    """The deployment leaves the view arguments; the relayed routes read it from `g`."""
    if values and "azure_deployment" in values:
        g.azure_deployment = values.pop("azure_deployment")


def _request_id() -> None:
    g.request_id = "req_" + secrets.token_hex(12)


def _headers(response):
    response.headers["x-request-id"] = g.get("request_id", "")
    if request.path.startswith(("/v1/", "/openai/")):
        response.headers["openai-version"] = "2020-10-01"
    return response
