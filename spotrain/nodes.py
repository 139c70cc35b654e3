"""Multi-node runs (`--nodes N`, issue 16): what is built and what is refused before anything launches.

Built: the launch (cloud/aws/instances.py: N in one request, one zone, the run's cluster placement
group, all or none), the quota (N x the vCPUs), the plan (N x the price), and the attached
orchestrator driving the N nodes of each attempt together (node_group.py). Not built: the detached
mode's Auto Scaling group of N, so `--detach` with N > 1 is refused here, after the plan is shown.
"""

from __future__ import annotations

from spotrain.errors import SpotrainError


def nodes_refused(spec, *, detach: bool) -> None:
    """`--nodes N` with N > 1 and `--detach`, refused after the plan is shown (its N x figures are
    worth seeing) and before anything is launched; attached, N nodes are driven together."""
    if spec.nodes <= 1 or not detach:
        return
    raise SpotrainError(
        f"--nodes {spec.nodes} with --detach: a detached run's Auto Scaling group holds one instance; "
        "a group of N nodes recovered together is not built",
        "drop --detach (the controller drives the N nodes attached), or use --nodes 1",
    )
