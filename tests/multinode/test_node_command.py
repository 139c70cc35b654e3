"""A node's trainer command (issue 16, step 2): each node of a multi-node attempt runs the same
trainer under `trainer.launch` joined at node 0's rendezvous (the form test_two_nodes_trainer.py
trains with); a single-node run's command is as before."""

from __future__ import annotations

from spotrain.config import PlanRecord, RunSpec
from spotrain.contract import NodeRole, trainer_command

FOUR_GPUS = PlanRecord("g4dn.12xlarge", gpus=4, root_gb=150, checkpoint_s=600.0)


def command(node: NodeRole | None, *, every_gpu: bool = True) -> list[str]:
    return trainer_command(
        RunSpec(recipe="digits", nodes=2, seed=3),
        FOUR_GPUS,
        run_id="r1",
        run_dir="/w/runs/r1",
        bucket="ckpts",
        ready={},
        python="python3",
        every_gpu=every_gpu,
        node=node,
    )


TRAINER = [
    "-m", "trainer.train", "--recipe", "digits", "--run-dir", "/w/runs/r1", "--resume", "auto",
    "--mirror", "s3://ckpts/runs/r1", "--seed", "3", "--checkpoint-every", "600.0",
]  # fmt: skip


def test_each_node_joins_node_0s_rendezvous_with_every_gpu_it_has() -> None:
    for rank in (0, 1):
        assert command(NodeRole(rank, 2, "10.0.0.5:29400", "r1-2")) == [
            "python3", "-m", "trainer.launch", "--nnodes", "2", "--node-rank", str(rank),
            "--nproc-per-node", "4", "--rdzv-backend", "c10d", "--rdzv-endpoint", "10.0.0.5:29400",
            "--rdzv-id", "r1-2", "--rdzv-conf", f"is_host={int(rank == 0)}", *TRAINER,
        ]  # fmt: skip
    # the dry-run's instances: one process a node, still under the launcher that joins the others
    dry = command(NodeRole(1, 2, "127.0.0.1:29400", "r1-2"), every_gpu=False)
    assert dry[7:9] == ["--nproc-per-node", "1"] and dry[2] == "trainer.launch"


def test_one_node_is_the_single_node_command() -> None:
    single = command(None)
    assert single[:5] == ["python3", "-m", "trainer.launch", "--standalone", "--nproc_per_node=4"]
    assert command(NodeRole(0, 1, "127.0.0.1:29400", "r1-1")) == single
