"""No path of the dry-run reaches an address outside 127.0.0.0/8 (issue 11): the demo's launch with its
interruption and resume, status, cost, logs and `down --all` run with a Python audit hook in every
process that records (and refuses) each connect or lookup that would leave loopback, and with the real
AWS path's endpoint at a closed local port."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .cli import DEMO, REPO, spotrain
from .test_edges_down import aws_at_a_closed_port

AUDIT = Path(__file__).parent / "netaudit"


def audited(tmp_path: Path) -> tuple[dict[str, str], Path]:
    log = tmp_path / "net-audit.log"
    env = {
        "PYTHONPATH": f"{AUDIT}:{REPO}",
        "SPOTRAIN_NET_AUDIT": str(log),
        **aws_at_a_closed_port(tmp_path),
    }
    return env, log


def test_the_audit_hook_sees_an_attempt_to_leave(tmp_path: Path) -> None:
    env, log = audited(tmp_path)
    code = "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 443), timeout=0.2)\nexcept OSError:\n    pass"
    subprocess.run([sys.executable, "-c", code], env={**env, "PATH": "/usr/bin:/bin"}, check=True)
    assert "192.0.2.1" in log.read_text()


def test_the_dry_run_flow_and_down_all_stay_on_loopback(tmp_path: Path) -> None:
    env, log = audited(tmp_path)
    home = tmp_path / "home"
    launched = spotrain(*DEMO, home=home, env=env)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    run_id = next(line.split()[1] for line in launched.stdout.splitlines() if line.startswith("run "))
    for args in (
        ("status",),
        ("cost", "--json"),
        ("logs", run_id, "--attempt", "1"),
        ("down", "--all", "-y"),
    ):
        out = spotrain(*args, home=home, env=env)
        assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-2000:])
    assert not log.exists(), log.read_text()
