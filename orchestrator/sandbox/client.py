"""The CodeSandbox port over HTTP, to `orchestrator sandbox` at ORCHESTRATOR_SANDBOX_URL.

Built on httpx2 (already the openai SDK's transport): plain socket I/O, which gevent's monkey patching
makes cooperative, so a worker greenlet waiting on code never blocks the others. The connection pool is
made on first use in each process (never inherited across a fork).

Several URLs (comma-separated) are several sandbox processes: each session goes to one of them by
rendezvous hashing on its id, so its state is always where its next execution goes, and adding or removing
a sandbox moves only the sessions that hashed to it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import httpx2 as httpx

from orchestrator.domain.errors import OrchestratorError, SandboxUnavailable
from orchestrator.sandbox.port import Execution, InputFile
from orchestrator.sandbox.wire import execution_from_wire, wire_file
from orchestrator.settings import Settings

CONNECT_SECONDS = 5.0
ATTEMPTS = 3  # a 409 asks for files; the session may restart in between once more


class SandboxClient:
    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None):
        self.urls = [
            url.strip().rstrip("/") for url in (settings.sandbox_url or "").split(",") if url.strip()
        ]
        if not self.urls:
            raise ValueError("SandboxClient needs ORCHESTRATOR_SANDBOX_URL")
        self._headers = {"Authorization": f"Bearer {settings.sandbox_token or ''}"}
        # An execution may wait for its session and for a slot (up to the time limit each), run to the time
        # limit and be interrupted; then comes the reply.
        read = 3 * settings.code_timeout_seconds + 30
        self._timeout = httpx.Timeout(read, connect=CONNECT_SECONDS)
        self._transport = transport
        self._http: httpx.Client | None = None
        self._pid: int | None = None

    def execute(self, session_id: str, code: str, files: Sequence[InputFile] = ()) -> Execution:
        url = self.url_for(session_id)
        sending: set[str] = set()
        for _ in range(ATTEMPTS):
            entries = [wire_file(f, with_data=f.name in sending) for f in files]
            response = self._post(
                url, "/v1/execute", {"session_id": session_id, "code": code, "files": entries}
            )
            if response.status_code != 409:
                return execution_from_wire(self._checked(url, response).json())
            sending = set(response.json().get("missing", []))
        raise SandboxUnavailable(f"The code sandbox at {url} kept asking for the input files.")

    def close(self, session_id: str) -> None:
        url = self.url_for(session_id)
        self._checked(url, self._post(url, "/v1/close", {"session_id": session_id}))

    def disconnect(self) -> None:
        """Close this process's connections (a later call opens new ones)."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def url_for(self, session_id: str) -> str:
        """The sandbox that holds this session: the URL with the highest hash of (URL, session id)."""
        return max(self.urls, key=lambda url: hashlib.sha256(f"{url}\n{session_id}".encode()).digest())

    def _post(self, url: str, path: str, body: dict) -> httpx.Response:
        try:
            return self._client().post(url + path, json=body, headers=self._headers)
        except httpx.TimeoutException as error:
            raise SandboxUnavailable(f"The code sandbox at {url} did not answer in time ({error}).") from None
        except httpx.HTTPError as error:
            raise SandboxUnavailable(f"The code sandbox at {url} is unreachable: {error}") from None

    def _checked(self, url: str, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        message = _message(response)
        if response.status_code in (401, 403):
            raise OrchestratorError(
                f"The code sandbox at {url} refused our ORCHESTRATOR_SANDBOX_TOKEN: {message}"
            )
        if response.status_code >= 500:
            raise SandboxUnavailable(f"The code sandbox at {url} failed: {message}")
        raise OrchestratorError(f"The code sandbox at {url} rejected the request: {message}")

    def _client(self) -> httpx.Client:
        if self._http is None or self._pid != os.getpid():
            self._http = httpx.Client(timeout=self._timeout, transport=self._transport)
            self._pid = os.getpid()
        return self._http


def _message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
