"""Schemathesis against the real production stack: a bounded number of generated requests for every
operation of /openapi.json (examples, coverage, fuzzing, and the stateful phase that chains the objects
one operation creates into the next), checking that nothing answers a 5xx and that every response (JSON
bodies, headers, each event of an event stream) conforms to the documented schemas."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e]

ST = Path(sys.executable).parent / "st"
# A lock around a thread-unsafe part of Hypothesis that Schemathesis' workers race on (see the module).
HOOKS = Path(__file__).resolve().parents[1] / "support" / "schemathesis_hooks.py"
# Conformance and robustness. Left out: positive_data_acceptance and negative_data_rejection judge input
# rules a schema cannot state (a cursor naming an object of the list, an idempotency key reused with
# another body), and the auth checks that need a second tenant's credentials.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "use_after_free",
        "ensure_resource_availability",
        "ignored_auth",
    ]
)


@pytest.mark.timeout(300)
def test_generated_requests_over_every_operation_get_no_5xx_and_conforming_responses(stack, tmp_path):
    key = stack.create_key("schemathesis")
    command = [
        str(ST),
        "run",
        f"{stack.base}/openapi.json",
        "--url",
        stack.base,
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        "8",
        "--seed",
        "14",
        "--workers",
        "4",  # the coverage phase's five thousand cases wait on the server more than they compute
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280)
    summary = result.stdout[result.stdout.find("SUMMARY") :] if "SUMMARY" in result.stdout else result.stdout
    print(summary)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:] + stack.logs()
    assert "Tested: " in result.stdout and "Stateful" in result.stdout
