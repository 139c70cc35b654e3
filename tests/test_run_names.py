"""Runs known by a name (`launch -n`), the store's schema 3 that keeps it, and `status` of many runs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from spotrain import controller, store_schema
from spotrain.cli import cli, main
from spotrain.config import PlanRecord, RunSpec
from spotrain.cost import PriceSample
from spotrain.errors import SpotrainError
from spotrain.layout import log_path
from spotrain.store import RunState, Store
from spotrain.workspace import find_run

ZONE, ITYPE = "us-east-1a", "g4dn.xlarge"


def finished_run(store: Store, run_id: str, name: str | None, *, dry_run: bool = True) -> str:
    """A run that trained one attempt to the end, priced, with its log kept."""
    spec = RunSpec(recipe="digits", instance=ITYPE, dry_run=dry_run)
    store.create_run(run_id, spec, dry_run, plan=PlanRecord(ITYPE, 1, 30, 60.0), name=name)
    store.add_price_samples("us-east-1", [PriceSample(ZONE, ITYPE, 1000.0, 0.25)])
    a = store.add_attempt(
        run_id,
        instance_id="i-0123",
        region="us-east-1",
        zone=ZONE,
        instance_type=ITYPE,
        spot_usd_per_hour=0.25,
        requested_at=2000.0,
    )
    store.add_trainer_events(run_id, a.number, [{"t": 2010.0, "kind": "eval", "top1": 0.9, "epoch": 1}])
    store.update_attempt(
        run_id, a.number, started_at=2000.0, ended_at=2600.0, end_reason="finished", last_step=40
    )
    store.set_state(run_id, RunState.SUCCEEDED, reason="target reached")
    log = log_path(store.path.parent, run_id, a.number)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"{run_id} step 40 done\n")
    return run_id


def dry_store(home: Path) -> Store:
    return Store.open(home / "dry-run")


# ---- schema 3 ----------------------------------------------------------------------------------------
def test_a_state_db_of_schema_2_gains_the_name_column_and_loses_nothing(isolated_env: Path) -> None:
    conn = sqlite3.connect(isolated_env / "state.db")
    for statement in store_schema.MIGRATIONS[0] + store_schema.MIGRATIONS[1]:
        conn.execute(statement)
    spec = json.dumps({"recipe": "digits", "instance": ITYPE, "regions": ["us-east-1"]})
    plan = json.dumps({"instance_type": ITYPE, "gpus": 1, "root_gb": 30, "checkpoint_s": 60.0})
    conn.execute("INSERT INTO runs VALUES ('r1', 1.0, 2.0, 'succeeded', ?, 1, 'done', ?)", (spec, plan))
    conn.execute(
        "INSERT INTO events (run_id, t, kind, data, source) VALUES ('r1', 1.5, 'eval', '{}', 'trainer')"
    )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with Store.open(isolated_env) as s:
        run = s.get_run("r1")
        assert (run.state, run.end_reason, run.dry_run, run.name) == (RunState.SUCCEEDED, "done", True, None)
        assert run.spec.recipe == "digits" and run.plan == PlanRecord(ITYPE, 1, 30, 60.0)
        assert [e.kind for e in s.events("r1")] == ["eval"]
        s.create_run("r2", RunSpec(recipe="digits"), True, name="second")
        assert s.run_names() == [("r2", "second"), ("r1", None)]
    conn = sqlite3.connect(isolated_env / "state.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store_schema.MIGRATIONS) >= 3


def test_the_store_refuses_a_taken_or_malformed_name(isolated_env: Path) -> None:
    with Store.open(isolated_env) as s:
        s.create_run("r1", RunSpec(recipe="digits"), False, name="lr-0.4")
        for taken in ("lr-0.4", "r1"):  # another run's name, or another run's id
            with pytest.raises(SpotrainError, match=f"'{taken}' is taken by run r1"):
                s.create_run("r2", RunSpec(recipe="digits"), False, name=taken)
        for bad in ("", "-rf", "a b", "x" * 41, "../up", "n[1]"):
            with pytest.raises(SpotrainError, match="is not allowed"):
                s.create_run("r2", RunSpec(recipe="digits"), False, name=bad)
        assert s.run_names() == [("r1", "lr-0.4")]


# ---- launch -n ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "said"), [("has space", "'has space' is not allowed"), ("mine", "'mine' is taken by run r1")]
)
def test_launch_refuses_a_bad_name_before_anything_is_planned_or_launched(
    isolated_env: Path, name: str, said: str, capsys, monkeypatch
) -> None:
    with dry_store(isolated_env) as s:
        finished_run(s, "r1", "mine")

    def no_plan(*_args, **_kwargs):
        raise AssertionError("planned a run whose name is refused")

    monkeypatch.setattr(controller, "prepare", no_plan)
    with pytest.raises(SystemExit) as exit_:
        main(["launch", "--dry-run", "--recipe", "digits", "-n", name, "-y"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and said in err and "hint:" in err and "Traceback" not in err
    with dry_store(isolated_env) as s:
        assert s.run_names() == [("r1", "mine")]
    assert not (isolated_env / "dry-run" / "instances").exists()


def test_a_name_taken_in_the_other_store_is_refused(isolated_env: Path) -> None:
    with Store.open(isolated_env) as real:
        finished_run(real, "r1", "mine", dry_run=False)
    with pytest.raises(SpotrainError, match="'mine' is taken by run r1"):
        controller.check_name("mine")
    assert controller.check_name("yours") == "yours"


# ---- finding a run by its name --------------------------------------------------------------------------
def test_a_run_is_found_by_id_name_or_prefix_in_either_store(isolated_env: Path) -> None:
    with Store.open(isolated_env) as real:
        finished_run(real, "digits-20261204-0900-aaaa", "baseline", dry_run=False)
    with dry_store(isolated_env) as s:
        finished_run(s, "digits-20261204-0901-bbbb", "fast")
    assert find_run("baseline") == ("digits-20261204-0900-aaaa", False)
    assert find_run("fast") == ("digits-20261204-0901-bbbb", True)
    assert find_run("digits-20261204-0901") == ("digits-20261204-0901-bbbb", True)
    with pytest.raises(SpotrainError, match="'fas' is unknown"):
        find_run("fas")


def test_status_logs_and_down_find_the_run_by_its_name(isolated_env: Path) -> None:
    with dry_store(isolated_env) as s:
        run_id = finished_run(s, "digits-20261204-0902-cccc", "named")
        finished_run(s, "digits-20261204-0903-dddd", "other")
    runner = CliRunner()
    status = runner.invoke(cli, ["status", "named", "--json"])
    assert status.exit_code == 0, status.output
    (row,) = json.loads(status.output)
    assert (row["run"], row["name"], row["state"], row["best_top1"]) == (run_id, "named", "succeeded", 0.9)
    logs = runner.invoke(cli, ["logs", "named"])
    assert logs.exit_code == 0 and logs.output == f"{run_id} step 40 done\n"
    down = runner.invoke(cli, ["down", "named", "-y"])
    assert down.exit_code == 0, down.output
    assert down.output.startswith(f"run {run_id}: succeeded")


# ---- status of many runs -----------------------------------------------------------------------------
def test_status_of_100_runs_gives_100_rows_without_a_cloud(isolated_env: Path, monkeypatch) -> None:
    from spotrain import workspace

    def no_cloud(self):
        raise AssertionError("status made a cloud")

    monkeypatch.setattr(workspace.Controller, "cloud", property(no_cloud))
    with Store.open(isolated_env) as real:
        for n in range(40):
            finished_run(real, f"digits-20261204-1000-{n:04x}", f"real-{n}", dry_run=False)
    with dry_store(isolated_env) as s:
        for n in range(40, 99):
            finished_run(s, f"digits-20261204-1000-{n:04x}", None if n % 2 else f"dry-{n}")
        s.create_run("digits-20261204-1001-live", RunSpec(recipe="digits"), True)  # no attempt, no price yet
    rows = controller.status_rows()
    assert len(rows) == 100
    assert {r["run"] for r in rows} == {f"digits-20261204-1000-{n:04x}" for n in range(99)} | {
        "digits-20261204-1001-live"
    }
    priced = [r for r in rows if r["state"] == "succeeded"]
    assert len(priced) == 99 and all(r["usd"] > 0 and r["attempts"] == 1 for r in priced)
    (live,) = [r for r in rows if r["state"] == "requesting"]
    assert (live["attempts"], live["usd"], live["epoch"]) == (0, 0.0, None)
    assert sum(r["dry_run"] for r in rows) == 60
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 0 and result.output.count("digits-20261204-10") == 100
