"""The trainer's command line end to end: it learns, it says how it ended, it refuses bad input."""

from __future__ import annotations

import pickle

from trainer_helpers import read_events


def test_digits_reaches_98_percent_held_out(trainer, tmp_path) -> None:
    run = tmp_path / "run"
    out = trainer.run("--recipe", "digits", "--run-dir", str(run), "--seed", "0")
    assert out.returncode == 0, out.stderr + out.stdout
    events = read_events(run)
    evals = [e for e in events if e["kind"] == "eval"]
    done = events[-1]
    assert done["kind"] == "done" and done["reason"] == "target"
    assert evals[-1]["top1"] >= 0.98 and done["best"] >= 0.98
    start = events[0]
    assert start["kind"] == "start" and start["world_size"] == 1 and len(start["code_hash"]) == 16
    assert start["config"]["target_acc"] == 0.98 and start["config"]["seed"] == 0
    assert start["precision"] == "fp32" and start["amp"] == "off" and "CPU" in start["precision_why"]
    assert {"step", "loss", "lr", "img_per_s"} <= set(next(e for e in events if e["kind"] == "step"))
    assert {"top1", "top5", "epoch", "images_seen"} <= set(evals[0])
    assert (run / "ckpt" / "LATEST").read_text().strip().startswith("step-")
    assert "done (target)" in (run / "train.log").read_text()
    print(f"digits: top1 {evals[-1]['top1']:.4f} after {len(evals)} epochs in {done['seconds']:.1f} s")


def test_unknown_recipe_lists_known_ones(trainer, tmp_path) -> None:
    out = trainer.run("--recipe", "mnist", "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2
    assert (
        "'mnist'" in out.stderr
        and "cifar10, cifar10_resnet9, digits, imagenet" in out.stderr
        and "Traceback" not in out.stderr
    )
    assert not (tmp_path / "r").exists()  # nothing written for a refused command


def test_target_outside_unit_interval_is_refused(trainer, tmp_path) -> None:
    for bad in ("0", "1.5", "-0.1"):
        out = trainer.run("--recipe", "digits", "--run-dir", str(tmp_path / "r"), "--target-acc", bad)
        assert out.returncode == 2, bad
        assert (
            f"--target-acc {float(bad)}" in out.stderr
            and "(0, 1]" in out.stderr
            and "Traceback" not in out.stderr
        )


def test_missing_data_names_path_and_layout(trainer, tmp_path) -> None:
    out = trainer.run("--recipe", "cifar10", "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2 and "needs --data" in out.stderr and "data_batch_1" in out.stderr
    out = trainer.run(
        "--recipe", "cifar10", "--run-dir", str(tmp_path / "r"), "--data", str(tmp_path / "nope")
    )
    assert out.returncode == 2 and str(tmp_path / "nope") in out.stderr and "no such directory" in out.stderr
    out = trainer.run("--recipe", "imagenet", "--run-dir", str(tmp_path / "r"), "--data", str(tmp_path))
    assert out.returncode == 2 and "train/" in out.stderr and "ImageFolder" in out.stderr
    assert "Traceback" not in out.stderr


def test_malformed_cifar_batch_is_named(trainer, tmp_path) -> None:
    data = tmp_path / "cifar"
    data.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (data / name).write_bytes(pickle.dumps({b"labels": [1, 2]}))  # no b"data"
    out = trainer.run("--recipe", "cifar10", "--run-dir", str(tmp_path / "r"), "--data", str(data))
    assert out.returncode == 2
    assert "data_batch_1 is not a CIFAR-10 python batch" in out.stderr and "Traceback" not in out.stderr
    assert read_events(tmp_path / "r")[-1]["kind"] == "error"


def test_resume_auto_with_nothing_starts_fresh_and_says_so(trainer, tmp_path) -> None:
    run = tmp_path / "run"
    out = trainer.run("--recipe", "digits", "--run-dir", str(run), "--resume", "auto", "--max-steps", "5")
    assert out.returncode == 0, out.stderr
    events = read_events(run)
    warning = next(e for e in events if e["kind"] == "warning")
    assert "nothing" in warning["message"] or "no checkpoint" in warning["message"]
    assert events[1]["kind"] == "start" and events[1]["resumed_from"] is None


def test_run_dir_with_checkpoints_needs_resume(trainer, tmp_path) -> None:
    run = tmp_path / "run"
    assert trainer.run("--recipe", "digits", "--run-dir", str(run), "--max-steps", "3").returncode == 0
    saved = sorted((run / "ckpt").iterdir())
    out = trainer.run("--recipe", "digits", "--run-dir", str(run), "--max-steps", "3")
    assert out.returncode == 2 and "already holds checkpoints" in out.stderr and "--resume auto" in out.stderr
    assert sorted((run / "ckpt").iterdir()) == saved  # nothing already saved is lost


def test_stdout_sent_to_train_log_is_not_doubled(trainer, tmp_path) -> None:
    """The controller's detached start appends the trainer's output to train.log itself."""
    import subprocess

    run = tmp_path / "run"
    run.mkdir()
    with open(run / "train.log", "ab") as log:
        code = subprocess.run(
            trainer.command("--recipe", "digits", "--run-dir", str(run), "--max-steps", "20"),
            cwd=trainer.extra_env["PYTHONPATH"],
            env=trainer.env,
            stdout=log,
            stderr=log,
        ).returncode
    assert code == 0
    lines = (run / "train.log").read_text().splitlines()
    assert sum("done (max_steps)" in line for line in lines) == 1


def test_eval_every_zero_evaluates_only_at_the_end(trainer, tmp_path) -> None:
    run = tmp_path / "run"
    out = trainer.run("--recipe", "digits", "--run-dir", str(run), "--max-epochs", "3", "--eval-every", "0")
    assert out.returncode == 0, out.stderr
    events = read_events(run)
    assert [e["epoch"] for e in events if e["kind"] == "eval"] == [3]
    assert len([e for e in events if e["kind"] == "epoch"]) == 3
    bad = trainer.run("--recipe", "digits", "--run-dir", str(tmp_path / "r2"), "--eval-every", "-1")
    assert bad.returncode == 2 and "--eval-every -1" in bad.stderr
