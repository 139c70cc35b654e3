"""The trainer's command line, as the controller builds it from the run's spec and its stored plan."""

from __future__ import annotations

import ast
import sys

from spotrain.config import PlanRecord, RunSpec
from spotrain.contract import DATA_DIR, parse_ready, run_paths, trainer_command

ONE_GPU = PlanRecord("g4dn.xlarge", gpus=1, root_gb=30, checkpoint_s=212.1)
FOUR_GPUS = PlanRecord("g4dn.12xlarge", gpus=4, root_gb=150, checkpoint_s=600.0)


def command(spec: RunSpec, plan: PlanRecord, *, ready: dict[str, str] | None = None, every_gpu: bool = True):
    return trainer_command(
        spec,
        plan,
        run_id="r1",
        run_dir="/w/runs/r1",
        bucket="ckpts",
        ready=ready or {},
        python="python3",
        every_gpu=every_gpu,
    )


def test_a_plain_run_resumes_mirrors_and_checkpoints_as_planned() -> None:
    assert command(RunSpec(recipe="digits", seed=3), ONE_GPU) == [
        "python3", "-m", "trainer.train", "--recipe", "digits", "--run-dir", "/w/runs/r1",
        "--resume", "auto", "--mirror", "s3://ckpts/runs/r1", "--seed", "3", "--checkpoint-every", "212.1",
    ]  # fmt: skip


def test_targets_limits_and_data_from_the_ready_marker() -> None:
    spec = RunSpec(recipe="imagenet", data="s3://my-data/imagenet", target_acc=0.7, max_epochs=2)
    ready = parse_ready("SPOTRAIN_PYTHON=/opt/pytorch/bin/python\nSPOTRAIN_DATA=/opt/dlami/nvme/data\n")
    argv = command(spec, ONE_GPU, ready=ready)
    assert argv[0] == "/opt/pytorch/bin/python"
    assert argv[-6:] == ["--target-acc", "0.7", "--max-epochs", "2", "--data", "/opt/dlami/nvme/data"]
    assert command(spec, ONE_GPU)[-2:] == ["--data", DATA_DIR]  # no marker says: the bootstrap's place


def test_every_gpu_of_the_planned_type_runs_under_torchrun() -> None:
    argv = command(RunSpec(recipe="digits"), FOUR_GPUS)
    assert argv[:5] == ["python3", "-m", "trainer.launch", "--standalone", "--nproc_per_node=4"]
    assert argv[5:8] == ["-m", "trainer.train", "--recipe"]
    assert command(RunSpec(recipe="digits"), FOUR_GPUS, every_gpu=False)[:3] == [
        "python3",
        "-m",
        "trainer.train",
    ]


def test_the_run_lives_beside_the_bundle_never_inside() -> None:
    assert run_paths("/home/ubuntu/spotrain/", "r1") == (
        "/home/ubuntu/spotrain/runs/r1",
        "/home/ubuntu/spotrain/bundle",
    )


def test_the_warm_start_imports_every_third_party_package_the_trainer_imports() -> None:
    """contract.WARM_MODULES is what the warm process imports before the trainer's code exists on the
    instance: a package the trainer imports from outside the bundle and the list forgets is paid for at
    every start again, and one listed that the trainer never imports is paid for for nothing."""
    from spotrain.contract import TRAINER_DIR, WARM_MODULES

    imported: set[str] = set()
    for path in TRAINER_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    # wandb is an optional extra the trainer imports only with --wandb (trainer/metrics_out.py): not warmed
    third_party = imported - set(sys.stdlib_module_names) - {"trainer", "__future__", "wandb"}
    assert third_party == {name.split(".")[0] for name in WARM_MODULES}
    assert not any(name.split(".")[0] == "trainer" for name in WARM_MODULES)
