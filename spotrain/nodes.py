"""Multi-node runs (`--nodes N`, issue 16): what is built and what is refused before anything launches.

Built: the launch (cloud/aws/instances.py: N in one request, one zone, the run's cluster placement
group, all or none), the quota (N x the vCPUs) and the plan (N x the price). Not built: the attached
orchestrator driving N nodes in one attempt (it starts one trainer, on the attempt's first instance)
and the detached mode's Auto Scaling group of N. Until they are, N > 1 is refused here, so no run pays
for N instances and trains on one.
"""

from __future__ import annotations

from spotrain.errors import SpotrainError


def nodes_refused(spec, *, detach: bool) -> None:
    """`--nodes N` with N > 1, refused after the plan is shown (its N x figures are worth seeing) and
    before anything is launched."""
    if spec.nodes <= 1:
        return
    if detach:
        raise SpotrainError(
            f"--nodes {spec.nodes} with --detach: a detached run's Auto Scaling group holds one instance; "
            "a group of N nodes recovered together is not built",
            "drop --detach (attached multi-node is not built either yet), or use --nodes 1",
        )
    raise SpotrainError(
        f"--nodes {spec.nodes}: the controller does not yet drive N nodes in one attempt (it would "
        "launch them all and train on one); the plan above is what N nodes would take",
        "use --nodes 1 on a larger instance type for now",
    )
