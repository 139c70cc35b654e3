"""The contract between the controller and an instance (ARCHITECTURE.md): where a run's things are on
the instance (the cloud's workdir holds `bundle/`, owned by sync, and `runs/RUN/` beside it, never
inside), the user data that prepares it, the ready marker its bootstrap writes, and the trainer's
command line."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from spotrain.config import PlanRecord, RunSpec

TRAINER_DIR = Path(__file__).resolve().parent.parent / "trainer"
BUNDLE, RUNS = "bundle", "runs"
WORKDIR = "workdir"  # the user's directory, under the bundle beside trainer/: where their command runs
DATA_DIR = "/opt/spotrain/data"  # where the data set is when the instance's ready marker does not say
BOOTSTRAP = Path(__file__).resolve().parent.parent / "infra" / "bootstrap.sh"
READY, BOOT_FAILED = "/opt/spotrain/ready", "/opt/spotrain/failed"  # written by infra/bootstrap.sh
BOOT_STAGE = "/opt/spotrain/stage"  # what the bootstrap is doing while not ready (data-s3, data-init 3/8)
# The third-party modules the trainer imports that are not in the bundle, imported by the warm process
# (remote/warm.py) while the instance boots and the bundle syncs: most of a small recipe's start is
# torch's import. A test pins this to the trainer's imports; `trainer` itself is never among them.
WARM_MODULES = (
    "torch",
    "numpy",
    "sklearn.datasets",
    "sklearn.model_selection",
    "boto3",
    "botocore.exceptions",
    # after the others, skipped once the go has come: torchrun (G > 1 only), ImageFolder recipes only
    "torch.distributed.run",
    "torchvision",
    "PIL.Image",
)


def user_data(spec: RunSpec) -> str:
    """The instance's user data: the run's settings as `export` lines, then infra/bootstrap.sh, which
    prepares the data and writes the ready marker the controller waits for."""
    script = BOOTSTRAP.read_text(encoding="utf-8")
    exports = []
    if (spec.data or "").startswith("s3://"):
        exports.append(f"export SPOTRAIN_DATA_S3={shlex.quote(spec.data or '')}")
    body = script.split("\n", 1)[1] if script.startswith("#!") else script
    return "#!/usr/bin/env bash\n" + "".join(line + "\n" for line in exports) + body


def parse_ready(text: str) -> dict[str, str]:
    """The ready marker's NAME=value lines (SPOTRAIN_PYTHON, SPOTRAIN_DATA)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def run_paths(workdir: str, run_id: str) -> tuple[str, str]:
    """(run directory, bundle directory) under the instance's workdir."""
    root = workdir.rstrip("/")
    return f"{root}/{RUNS}/{run_id}", f"{root}/{BUNDLE}"


@dataclass(frozen=True)
class NodeRole:
    """One node's part in a multi-node attempt's torchrun job (`--nodes N`)."""

    rank: int  # 0..nodes-1: node 0 hosts the rendezvous and writes the events and checkpoints
    nodes: int
    endpoint: str  # HOST:PORT of node 0's rendezvous (its private address; 127.0.0.1 in the dry-run)
    job_id: str  # the rendezvous id, one per attempt (a node of another attempt never joins)


def node_launch_args(role: NodeRole, *, gpus: int) -> list[str]:
    """`trainer.launch`'s options for `role`'s node: c10d rendezvous at node 0's endpoint, which node 0
    hosts (`is_host`: with every node on one address, as in the dry-run, the first to bind would host,
    and a host killed takes the others' agents with it instead of leaving node 0 to report)."""
    return [
        "--nnodes", str(role.nodes), "--node-rank", str(role.rank), "--nproc-per-node", str(gpus),
        "--rdzv-backend", "c10d", "--rdzv-endpoint", role.endpoint, "--rdzv-id", role.job_id,
        "--rdzv-conf", f"is_host={int(role.rank == 0)}",
    ]  # fmt: skip


def trainer_command(
    spec: RunSpec,
    plan: PlanRecord,
    *,
    run_id: str,
    run_dir: str,
    bucket: str,
    ready: Mapping[str, str],
    python: str,
    every_gpu: bool,
    node: NodeRole | None = None,
) -> list[str]:
    """The trainer's whole command line: always --resume auto, mirrored to the run's prefix, the
    checkpoint interval the plan chose. `ready` is the instance's ready marker (its python and data
    directory win over `python` and DATA_DIR); `every_gpu` False (the dry-run's instances) trains in
    one process whatever the plan's type has. `node`: this node's part in a multi-node attempt (its
    torchrun joins the others at node 0's rendezvous)."""
    args = [
        "-m",
        "trainer.train",
        "--recipe",
        spec.recipe,
        "--run-dir",
        run_dir,
        "--resume",
        "auto",
        "--mirror",
        f"s3://{bucket}/runs/{run_id}",
        "--seed",
        str(spec.seed),
        "--checkpoint-every",
        str(plan.checkpoint_s),
    ]
    if spec.target_acc is not None:
        args += ["--target-acc", str(spec.target_acc)]
    if spec.max_epochs is not None:
        args += ["--max-epochs", str(spec.max_epochs)]
    if spec.data:
        args += ["--data", ready.get("SPOTRAIN_DATA") or DATA_DIR]
    # Metrics out, optional extras on the instance: the run dir's name (the run id) is W&B's run id.
    if spec.tensorboard:
        args += ["--tensorboard"]
    if spec.wandb:
        args += ["--wandb", spec.wandb]
    python = ready.get("SPOTRAIN_PYTHON") or python
    gpus = plan.gpus if every_gpu else 1
    if node is not None and node.nodes > 1:
        return [python, "-m", "trainer.launch", *node_launch_args(node, gpus=gpus), *args]
    if gpus > 1:  # trainer.launch is torchrun that passes the workers' exit code (75) through
        return [python, "-m", "trainer.launch", "--standalone", f"--nproc_per_node={gpus}", *args]
    return [python, *args]


def user_command(
    spec: RunSpec,
    plan: PlanRecord,
    *,
    run_id: str,
    run_dir: str,
    bundle: str,
    bucket: str,
    ready: Mapping[str, str],
    python: str,
) -> list[str]:
    """The supervisor of the user's own command (trainer/usercmd.py), in place of the trainer: the same
    run directory and mirror, the command run in the synced workdir, checked for a changed checkpoint
    directory at the plan's checkpoint interval. One process: the command starts its own workers."""
    args = ["-m", "trainer.usercmd", "--run-dir", run_dir, "--workdir", f"{bundle.rstrip('/')}/{WORKDIR}"]
    args += ["--mirror", f"s3://{bucket}/runs/{run_id}", "--checkpoint-every", str(plan.checkpoint_s)]
    if spec.setup:
        args += ["--setup", spec.setup]
    return [ready.get("SPOTRAIN_PYTHON") or python, *args, "--", spec.run or ""]
