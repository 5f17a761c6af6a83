"""Which sandbox a process uses, safe by default:

    ORCHESTRATOR_SANDBOX_URL set          the `orchestrator sandbox` service's client (production)
    ORCHESTRATOR_CODE_IN_PROCESS set      a jail in this process (`orchestrator dev` sets it)
    neither                               none: every execution fails, saying how to get one

Code in a jail inside a worker runs beside the worker's database and Redis credentials, so a worker
falls into that only when told to, never because a URL was left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.domain.errors import SandboxUnavailable
from orchestrator.sandbox.port import CodeSandbox, Execution, InputFile
from orchestrator.settings import Settings

NOT_CONFIGURED = (
    "code_interpreter is not available: this process has no sandbox (set ORCHESTRATOR_SANDBOX_URL to the "
    "`orchestrator sandbox` service, or ORCHESTRATOR_CODE_IN_PROCESS=true to run code in a jail inside this "
    "process; docs/sandbox.md)"
)


def make_sandbox(settings: Settings) -> CodeSandbox:
    if settings.sandbox_url:
        from orchestrator.sandbox.client import SandboxClient

        return SandboxClient(settings)
    if settings.code_in_process:
        from orchestrator.sandbox.local import LocalSandbox

        return LocalSandbox(settings)
    return NoSandbox()


def describe(settings: Settings) -> tuple[bool, str]:
    """Whether code can run in this process's configuration, and where (for start-up logs)."""
    if settings.sandbox_url:
        return True, f"code_interpreter runs in the sandbox service at {settings.sandbox_url}"
    if settings.code_in_process:
        return True, (
            "code_interpreter runs in a jail inside this process (ORCHESTRATOR_CODE_IN_PROCESS), beside "
            "its credentials; production should use the `orchestrator sandbox` service"
        )
    return False, NOT_CONFIGURED


class NoSandbox:
    """The CodeSandbox of a process without one: nothing runs, and the error says how to get one."""

    def execute(self, session_id: str, code: str, files: Sequence[InputFile] = ()) -> Execution:
        raise SandboxUnavailable(NOT_CONFIGURED)

    def close(self, session_id: str) -> None:
        return None
