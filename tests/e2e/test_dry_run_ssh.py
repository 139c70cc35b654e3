"""The demo flow again, with every instance reached through a real OpenSSH server on 127.0.0.1
(sync, detached start, log and event following all over SSH), driven in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from remote.sshd_server import SSHD, Sshd, sshd_available  # tests/remote, a package beside this one

from spotrain.cloud.local import LocalCloud
from spotrain.config import load_spec
from spotrain.controller import create_run, prepare
from spotrain.remote import SSHTarget
from spotrain.store import RunState
from spotrain.workspace import open_controller


@pytest.fixture
def sshd(tmp_path: Path):
    if not sshd_available():
        if os.environ.get("SPOTRAIN_REQUIRE_SSHD") == "1":
            pytest.fail(f"SPOTRAIN_REQUIRE_SSHD=1 but there is no sshd at {SSHD}")
        pytest.skip("no sshd here (apt-get install openssh-server)")
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.stop()


def test_demo_through_a_real_sshd(sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec = load_spec(
        None,
        {
            "recipe": "digits",
            "dry_run": True,
            "inject_interruptions": ["step:30"],
            "auto_resume": True,
            "boot_delay_s": 0.2,
        },
    )
    target = SSHTarget("127.0.0.1", sshd.user, sshd.client_key, "i-placeholder", sshd.port)
    with open_controller(dry_run=True, boot_delay_s=0.2) as ctl:
        ctl._cloud = LocalCloud(ctl.state_dir, boot_delay_s=0.2, sshd=target)
        spec, plan = prepare(ctl, spec)
        run_id = create_run(ctl, spec, plan)
        outcome = ctl.orchestrator(ssh=True).drive(run_id)
        assert outcome.state == RunState.SUCCEEDED, outcome.reason
        first, second = ctl.store.attempts(run_id)
        interruption = ctl.store.events(run_id, kinds=["interruption"])[0]
        syncs = ctl.store.events(run_id, kinds=["sync"])
        best = max(e.data["top1"] for e in ctl.store.events(run_id, kinds=["eval"]))
    assert first.end_reason == "spot-interruption" and second.end_reason == "finished"
    assert first.zone != second.zone
    assert second.resumed_from_step == interruption.data["step"] > 0
    assert best >= 0.98
    assert len(syncs) == 2 and all(s.data["bytes"] > 10_000 for s in syncs)  # went over the SSH channel
