"""code_interpreter's sandbox: untrusted Python in a bubblewrap jail, one persistent interpreter per session.

    port.py         what the engine calls: execute(session_id, code, files) -> Execution, close(session_id)
    client.py       SandboxClient: that port over HTTP to `orchestrator sandbox` (production)
    local.py        LocalSandbox: that port in this process (`orchestrator dev`, and inside the service)
    service.py      the `orchestrator sandbox` HTTP service; wire.py its bodies
    registry.py     live sessions: one execution at a time each, idle expiry, least-recently-used eviction
    ledger.py       which sessions existed, on disk, so a session lost to a restart says so
    interpreter.py  one jailed interpreter seen from the host: pipes, limits, SIGINT, kill
    jail.py         the bwrap command line; runtime.py which host paths the jail shows
    limits.py       the limits and how each is enforced; proctree.py CPU and memory from /proc
    driver.py       the program inside the jail (standard library only); report.py its reply, checked

How interpreter state is kept: a small driver of our own, over pipes, rather than ipykernel +
jupyter_client. Both were tried here inside the same bwrap jail (ipykernel over ZMQ's ipc transport on a
bind-mounted directory). The kernel took 0.8 s to start and ~40 MB per idle session, with 12 threads
(each counts against RLIMIT_NPROC and, with its stack, RLIMIT_AS) and about 30 packages (126 MB, debugpy
among them) that every jail environment would have to carry. Its host side needs pyzmq sockets and an
asyncio loop, which gevent's patching does not make cooperative. The driver starts in ~0.05 s, uses ~11 MB,
runs on any interpreter with nothing installed, and its host side is pipes and `selectors`. What Jupyter
would have given is rebuilt with the standard library: the last expression's value is displayed, figures
shown or left open become PNG images (a matplotlib backend of its own), and SIGINT raises
KeyboardInterrupt without losing the session's state.
"""

from orchestrator.sandbox.factory import make_sandbox
from orchestrator.sandbox.port import (
    CodeSandbox,
    Execution,
    InputFile,
    Outcome,
    OutputFile,
    check_name,
    mount_names,
    safe_name,
)

__all__ = [
    "CodeSandbox",
    "Execution",
    "InputFile",
    "Outcome",
    "OutputFile",
    "check_name",
    "make_sandbox",
    "mount_names",
    "safe_name",
]
