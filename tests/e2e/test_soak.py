"""The soak at a small size: mixed runs over three workers while workers are SIGKILLed and Redis and
Postgres (a throwaway cluster) restart, then every invariant checked on the database (scripts/soak.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


@pytest.mark.timeout(240)
def test_a_small_soak_keeps_every_invariant_through_kills_and_restarts():
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--runs",
            "24",
            "--clients",
            "8",
            "--fault-every",
            "1.5",  # the four kinds of fault come within six seconds: the runs end sooner than that
            "--expires",
            "8",  # the expiry runs' wait, which the soak ends with
        ],
        capture_output=True,
        text=True,
        timeout=230,
    )
    report = json.loads(result.stdout[result.stdout.index("{") :])
    print(json.dumps({k: v for k, v in report.items() if k != "invariants"}))
    failed = {name: r["violations"] for name, r in report["invariants"].items() if not r["ok"]}
    assert result.returncode == 0 and not failed, (failed, result.stderr[-3000:])
    faults = report["faults"]
    assert faults["worker SIGKILLs"] >= 2 and faults["redis restarts (empty)"] >= 1
    assert faults["postgres restarts"] >= 1
    assert report["runs"] == 24 and sum(report["final statuses"].values()) == 24
