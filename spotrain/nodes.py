"""Multi-node runs (`--nodes N`, issue 16): what is built and what is refused before anything launches.

Built: the launch (cloud/aws/instances.py: N in one request, one zone, the run's cluster placement
group, all or none), the quota (N x the vCPUs), the plan (N x the price), and the attached
orchestrator driving the N nodes of each attempt together (node_group.py). Not built: the detached
mode's Auto Scaling group of N, and the user's own command (`run:`) across nodes: both are refused
here with N > 1, after the plan is shown.
"""

from __future__ import annotations

from spotrain.errors import SpotrainError


def nodes_refused(spec, *, detach: bool) -> None:
    """`--nodes N` with N > 1 and `--detach`, refused after the plan is shown (its N x figures are
    worth seeing) and before anything is launched; attached, N nodes are driven together."""
    if spec.nodes <= 1:
        return
    if spec.run:  # node_group.py starts the bundled trainer's torchrun form on each node, not `run:`
        raise SpotrainError(
            f"--nodes {spec.nodes} with your own command: each node would need its rendezvous (node 0's "
            "address, its rank), which spotrain gives only the bundled trainer",
            "use --nodes 1 for your own command, or a bundled recipe (--recipe) across nodes",
        )
    if not detach:
        return
    raise SpotrainError(
        f"--nodes {spec.nodes} with --detach: a detached run's Auto Scaling group holds one instance; "
        "a group of N nodes recovered together is not built",
        "drop --detach (the controller drives the N nodes attached), or use --nodes 1",
    )
