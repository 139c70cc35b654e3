"""The `make demo` flow as a test: a dry-run launch of digits, interrupted at training step 30, resumed
on a new instance in another zone from the mirrored checkpoint, to the target; then `spotrain cost`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spotrain import cost
from spotrain.store import Store

from .cli import DEMO, spotrain


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[str, dict, Path]:
    """One demo launch shared by this module's tests: (stdout, cost --json, SPOTRAIN_HOME)."""
    home = tmp_path_factory.mktemp("home")
    out = spotrain(*DEMO, home=home)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    report = spotrain("cost", "--json", home=home)
    assert report.returncode == 0, report.stderr
    return out.stdout, json.loads(report.stdout), home


def test_demo_is_interrupted_resumed_in_another_zone_and_reaches_the_target(demo_run) -> None:
    stdout, bill, home = demo_run
    assert "never came" not in stdout, stdout[-3000:]
    assert "SUCCEEDED" in stdout
    first, second = bill["attempts"]
    assert first["end_reason"] == "spot-interruption" and second["end_reason"] == "finished"
    assert first["zone"] != second["zone"]
    with Store.open(home / "dry-run") as store:
        run_id = bill["run"]
        interruption = [e for e in store.events(run_id, kinds=["interruption"])][0]
        assert (interruption.data["step"], interruption.data["source"]) == (30, "injected")
        assert second["resumed_from_step"] == interruption.data["step"]
        best = max(e.data["top1"] for e in store.events(run_id, kinds=["eval"]))
        assert best >= 0.98
        (cleanup,) = store.events(run_id, kinds=["cleanup"])  # the finished run left no security group
        assert [d for d in cleanup.data["deleted"] if d.startswith("sg-")] and not cleanup.data["failed"]
        # The bill equals what cost.py computes from the stored attempts and price samples.
        # EC2 reclaimed the interrupted attempt's instance (spotrain left it): its first hour is free.
        by_ec2 = {e.attempt for e in store.events(run_id, kinds=["reclaim"]) if e.data["by"] == "ec2"}
        assert by_ec2 == {1}
        attempts, samples = [], []
        for a in store.attempts(run_id):
            attempts.append(
                cost.Attempt(
                    f"{run_id}-{a.number}",
                    a.instance_type,
                    a.zone,
                    a.started_at,
                    a.ended_at,
                    ebs_gb=120,
                    reclaimed_by_ec2=a.number in by_ec2,
                )
            )
            samples += store.price_samples(
                region=a.region,
                instance_type=a.instance_type,
                zones=[a.zone],
                start=a.started_at,
                end=a.ended_at,
            )
        expected = cost.run_cost(attempts, samples)
    assert bill["spot_usd"] == pytest.approx(expected.spot_usd, abs=1e-6)
    assert bill["ebs_usd"] == pytest.approx(expected.ebs_usd, abs=1e-6)
    assert bill["to_target"] is not None and bill["savings_fraction"] > 0.3


def test_cost_prints_the_same_numbers_as_the_launch(demo_run) -> None:
    stdout, bill, home = demo_run
    assert f"{bill['spot_usd']:.4f}" in stdout and f"{bill['total_usd']:.4f}" in stdout
    table = spotrain("cost", bill["run"], home=home)
    assert table.returncode == 0 and f"{bill['total_usd']:.4f}" in table.stdout


def test_status_and_logs_of_the_demo_run(demo_run) -> None:
    _, bill, home = demo_run
    status = json.loads(spotrain("status", "--json", home=home).stdout)
    row = next(r for r in status if r["run"] == bill["run"])
    assert row["state"] == "succeeded" and row["attempts"] == 2 and row["best_top1"] >= 0.98
    first = spotrain("logs", bill["run"], "--attempt", "1", home=home)
    assert first.returncode == 0 and "interrupted (injected" in first.stdout
    assert "done (" in spotrain("logs", bill["run"], home=home).stdout
    missing = spotrain("logs", bill["run"], "--attempt", "7", home=home)
    assert missing.returncode == 2 and "no attempt 7" in missing.stderr
