"""The dry-run end to end (launch, interruption, resume, `down`), in this process, under botocore's
event hooks: the stack from infra/ is deployed on the dry-run's moto and its outputs are used (the bucket the trainer mirrors to, the
instance profile every launch passes); every boto3 call the controller makes is allowed by
infra/controller-policy.json, and every action that policy grants is used by this flow or by the flows
of test_policy.py, or justified in infra/controller-policy.md.

The dry-run's own seeding (the moto server's bucket reload, the stack deploy as an administrator)
is not the controller's and is not checked; the trainer runs in its own process, and its S3 calls are
checked by test_policy.py's mirror flow against the instance role.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spotrain import config
from spotrain.cloud.aws import stack
from spotrain.controller import create_run, launch, prepare
from spotrain.store import RunState
from spotrain.workspace import open_controller

from .policies import NOTES, justified
from .policy_check import check_policies, record_operations

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")


def test_the_dry_run_uses_the_stack_and_calls_only_what_the_policy_allows(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    flags = {"recipe": "digits", "dry_run": True, "inject_interruptions": ["step:30"], "auto_resume": True}
    spec = config.load_spec(None, {**flags, "boot_delay_s": 0.5})
    with open_controller(dry_run=True, boot_delay_s=0.5) as ctl:
        with record_operations() as rec:
            spec, plan = prepare(ctl, spec)  # makes the LocalCloud: moto, its seed, the stack
            run_id = create_run(ctl, spec, plan)
            outcome = launch(ctl, run_id)
            left = ctl.orchestrator().down(run_id)  # `spotrain down`: finds what the run left
            swept = ctl.cloud.sweep(None)  # `spotrain down --all`: every run's leftovers, the key pairs
        assert outcome.state is RunState.SUCCEEDED, outcome.reason
        assert len(ctl.store.attempts(run_id)) == 2  # interrupted once, resumed
        assert left == []  # the run swept its security group itself when it succeeded
        assert [k for k in swept.deleted if k.startswith("spotrain-")], swept  # its key pair went
        cloud = ctl.cloud
        stored = stack.load_outputs("us-east-1", home=ctl.state_dir)
        assert stored is not None and stack.load_outputs("us-east-1") is None  # the real file untouched
        assert cloud.bucket() == stored.bucket and cloud.instance_profile() == stored.instance_profile_arn
        s3 = cloud.session().client("s3", region_name="us-east-1")  # the test's own: not recorded
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stored.bucket)["Contents"]]
        assert f"runs/{run_id}/ckpt/LATEST" in keys  # the trainer mirrored into the stack's bucket
        assert all(k.startswith("runs/") for k in keys)  # where the instance role may write

    launches = [c for c in rec.of("controller") if c.operation == "RunInstances"]
    assert len(launches) == 2
    assert all(c.params["IamInstanceProfile"] == {"Arn": stored.instance_profile_arn} for c in launches)
    setup = {(c.service, c.operation) for c in rec.calls} & {
        ("cloudformation", "CreateStack"),
        ("s3", "CreateBucket"),
        ("s3", "PutObject"),
    }
    assert not setup, f"the dry-run's own setup was recorded as the controller's: {setup}"

    report = check_policies(rec)  # raises, listing each call the controller policy does not allow
    assert {
        "ec2:DescribeSpotPriceHistory",
        "ec2:RunInstances",
        "ec2:CreateTags",
        "iam:PassRole",
        "ec2:DescribeInstances",
        "ec2:TerminateInstances",
        "ec2:DeleteSecurityGroup",
        "ec2:DeleteKeyPair",
    } <= report.used["controller"]
    unexplained = report.unused["controller"] - justified("Granted but not used", "Used by the other")
    assert not unexplained, f"granted, used by no flow, not justified in {NOTES.name}: {unexplained}"
