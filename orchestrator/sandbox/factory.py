"""Which sandbox a process uses: the service's client when ORCHESTRATOR_SANDBOX_URL is set, else the jail in
this process (the embedded mode)."""

from __future__ import annotations

from orchestrator.sandbox.port import CodeSandbox
from orchestrator.settings import Settings


def make_sandbox(settings: Settings) -> CodeSandbox:
    if settings.sandbox_url:
        from orchestrator.sandbox.client import SandboxClient

        return SandboxClient(settings)
    from orchestrator.sandbox.local import LocalSandbox

    return LocalSandbox(settings)
