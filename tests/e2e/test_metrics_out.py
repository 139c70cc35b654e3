"""Metrics out on the dry-run: the demo (one injected interruption, --auto-resume) launched with
--tensorboard; `spotrain tensorboard RUN` fetches the event files the trainer mirrored to (moto's) S3,
and TensorBoard's own reader finds the eval curve across both attempts. The controller never imports
tensorboard or wandb, and passes the flags to the trainer only when asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from e2e import cli
from spotrain.config import PlanRecord, RunSpec
from spotrain.contract import trainer_command

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tensorboard_demo(tmp_path_factory) -> SimpleNamespace:
    pytest.importorskip("tensorboard")
    home = tmp_path_factory.mktemp("home")
    done = cli.spotrain(*cli.DEMO, "--tensorboard", home=home)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    run = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("run "))
    return SimpleNamespace(home=home, run=run)


def test_the_event_files_hold_the_eval_curve_across_both_attempts(tensorboard_demo, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "tb"
    out = cli.spotrain("tensorboard", tensorboard_demo.run, "--out", str(logdir), home=tensorboard_demo.home)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"tensorboard --logdir {logdir}" in out.stdout
    names = sorted(p.name for p in logdir.iterdir())
    assert [n.rsplit(".", 1)[-1] for n in names] == ["attempt-1", "attempt-2"], names  # one file an attempt
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    evals = [(e.step, e.value) for e in acc.Scalars("eval/top1")]
    # The demo's notice is at step 30 (tests/e2e/cli.py): one eval before it (attempt 1), the rest after.
    assert [s for s, _ in evals if s < 30] == [22] and len([s for s, _ in evals if s > 30]) >= 1, evals
    assert [s for s, _ in evals] == sorted(s for s, _ in evals) and evals[-1][1] >= 0.98  # the target
    losses = [e.step for e in acc.Scalars("train/loss")]
    assert losses == sorted(set(losses)) and min(losses) < 30 < max(losses)  # one curve, no step twice


def test_a_run_without_tensorboard_is_told_how_to_get_it(tensorboard_demo, tmp_path) -> None:
    """The demo's home holds only the --tensorboard run: an unknown run exits 2 naming it."""
    out = cli.spotrain("tensorboard", "digits-nope", "--out", str(tmp_path), home=tensorboard_demo.home)
    assert out.returncode == 2 and "digits-nope" in out.stderr and "Traceback" not in out.stderr


def test_importing_the_cli_imports_neither_tensorboard_nor_wandb() -> None:
    code = (
        "import sys, spotrain.cli, spotrain.report, spotrain.contract, spotrain.cli_metrics\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorboard', 'wandb', 'torch'))\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_trainer_gets_the_metrics_flags_only_when_asked() -> None:
    plan = PlanRecord(instance_type="g4dn.xlarge", gpus=1, root_gb=100, checkpoint_s=300.0)

    def command(**fields) -> list[str]:
        spec = RunSpec(recipe="digits", **fields)
        kw = {"run_id": "r1", "run_dir": "/w/runs/r1", "bucket": "b", "ready": {}, "python": "python3"}
        return trainer_command(spec, plan, every_gpu=False, **kw)

    plain = command()
    assert "--tensorboard" not in plain and "--wandb" not in plain
    asked = command(tensorboard=True, wandb="my-project")
    assert asked[-3:] == ["--tensorboard", "--wandb", "my-project"]


def test_a_wandb_project_name_w_and_b_refuses_is_refused_before_launch() -> None:
    from spotrain.config import load_spec
    from spotrain.errors import SpotrainError

    with pytest.raises(SpotrainError, match=r"wandb: team/project is not allowed; expected a W&B project"):
        load_spec(None, {"recipe": "digits", "wandb": "team/project"}, env={})
