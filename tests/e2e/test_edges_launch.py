"""The launch's edges (issue 11, items 1 and 5): --zone is what the attempts use, and a value the
cloud refuses is refused before a run exists; a launch refused later never leaves a run REQUESTING."""

from __future__ import annotations

import pytest

from spotrain.config import load_spec
from spotrain.controller import create_run, prepare
from spotrain.store import RunState
from spotrain.workspace import open_controller

from .cli import spotrain
from .edges import bill, refused, runs

DIGITS = ("launch", "--dry-run", "--recipe", "digits", "-y", "--boot-delay", "0.2")


def test_every_attempt_runs_in_the_one_allowed_zone(tmp_path) -> None:
    # Interrupted in it, the run may not move to the cheaper zones: --zone is the whole list.
    out = spotrain(
        *DIGITS, "--zone", "us-east-1d", "--inject-interruption", "step:30", "--auto-resume", home=tmp_path
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    (run,) = runs(tmp_path)
    zones = [a["zone"] for a in bill(tmp_path, run["run"])["attempts"]]
    assert zones == ["us-east-1d", "us-east-1d"]


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (
            ("--zone", "us-east-1z"),
            ("--zone us-east-1z: not an availability zone of us-east-1", "us-east-1a"),
        ),
        (("--max-price", "0.0001"), ("--max-price $0.0001/h is below every allowed zone's spot price",)),
        (("--data", "snap-0123456789abcdef0"), ("--data snap-0123456789abcdef0: no such EBS snapshot",)),
    ],
    ids=["zone-not-in-region", "max-price-below-every-zone", "snapshot-not-found"],
)
def test_a_value_the_cloud_refuses_is_refused_before_a_run_exists(tmp_path, args, phrases) -> None:
    refused(spotrain(*DIGITS, *args, home=tmp_path), *phrases)
    assert runs(tmp_path) == []


def test_a_launch_refused_after_the_plan_ends_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The price rose past --max-price between the plan and the launch: the run ends FAILED with the
    reason, not REQUESTING forever."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with open_controller(dry_run=True, boot_delay_s=0.2) as ctl:
        spec, plan = prepare(ctl, load_spec(None, {"recipe": "digits", "dry_run": True}))
        run_id = create_run(ctl, spec.model_copy(update={"max_price": 0.0001}), plan)
        with pytest.raises(Exception, match="max-price"):
            ctl.orchestrator().drive(run_id)
        run = ctl.store.get_run(run_id)
        assert run.state == RunState.FAILED and run.end_reason.startswith("the launch was refused")


def test_a_run_that_finishes_before_its_injected_notice_says_so(tmp_path) -> None:
    out = spotrain(*DIGITS, "--inject-interruption", "step:500", home=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "the injected interruption step:500 never came (the run reached its target at step" in out.stdout


def test_a_specs_includes_reach_the_instance_beside_the_trainer(tmp_path) -> None:
    # `includes` was stored and never sent: a file the trainer's working directory should hold.
    work = tmp_path / "work"
    (work / "conf").mkdir(parents=True)
    (work / "conf" / "labels.txt").write_text("zero\none\n")
    (work / "notes.md").write_text("hello\n")
    (work / "run.yaml").write_text("recipe: digits\nincludes: [conf, notes.md]\n")
    out = spotrain("launch", "-f", str(work / "run.yaml"), *DIGITS[1:], home=tmp_path / "home")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    (bundle,) = (tmp_path / "home" / "dry-run" / "instances").glob("i-*/spotrain/bundle")
    assert (bundle / "conf" / "labels.txt").read_text() == "zero\none\n"
    assert (bundle / "notes.md").read_text() == "hello\n" and (bundle / "trainer" / "train.py").exists()


@pytest.mark.parametrize(
    ("includes", "phrase"),
    [("[missing.txt]", "missing.txt: no such file or directory"), ("[a/trainer]", "none named trainer")],
    ids=["missing", "named-trainer"],
)
def test_includes_that_cannot_be_sent_are_refused_before_a_run_exists(tmp_path, includes, phrase) -> None:
    (tmp_path / "a" / "trainer").mkdir(parents=True)
    (tmp_path / "run.yaml").write_text(f"recipe: digits\nincludes: {includes}\n")
    refused(spotrain("launch", "-f", str(tmp_path / "run.yaml"), *DIGITS[1:], home=tmp_path / "h"), phrase)
    assert runs(tmp_path / "h") == []
