"""`spotrain status` stays light: it reads the state database and renders, and imports none of what
only driving a run needs (bench/status.py times it; this checks what it loads, not how long it takes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from spotrain.config import PlanRecord, RunSpec
from spotrain.store import Store

HEAVY = [
    "pydantic",
    "boto3",
    "botocore",
    "paramiko",
    "moto",
    "yaml",
    "spotrain.orchestrator",
    "spotrain.plan",
    "rich.table",  # piped (as here), the table is plain text: drawing it with rich was most of the time
]
PROBE = """
import json, sys
from spotrain.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(home: Path, *args: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env={
            "SPOTRAIN_HOME": str(home),
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(Path(__file__).parents[1]),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_status_and_status_name_import_no_pydantic_cloud_or_orchestrator(isolated_env: Path) -> None:
    for store_dir in (isolated_env, isolated_env / "dry-run"):
        with Store.open(store_dir) as s:
            run_id = f"digits-{store_dir.name}"
            s.create_run(run_id, RunSpec(recipe="digits"), True, plan=PlanRecord("c5.large", 0, 30, 60.0))
    with Store.open(isolated_env) as s:
        s.create_run("digits-named", RunSpec(recipe="digits"), False, name="named")
    for args in (["status"], ["status", "named"], ["status", "--json"]):
        modules = loaded_by(isolated_env, *args)
        assert "spotrain.store" in modules  # the probe ran the command
        assert [m for m in HEAVY if m in modules] == [], args
