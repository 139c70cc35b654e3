"""Every boto3 call of the controller's flows is allowed by infra/controller-policy.json, and every call
of the trainer's mirror by the instance role in infra/spotrain.yaml; and the policies grant no action
that no flow used, except those listed with a reason in infra/controller-policy.md."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from helpers import PYTORCH_DLAMI, PYTORCH_SSM, V100_DLAMI, V100_SSM
from moto import mock_aws

from spotrain.cloud.aws import client, instances, lifecycle, network, prices, stack, storage, sweep
from spotrain.cloud.aws.attempt import AttemptRequest, start_attempt
from spotrain.cloud.local.moto_patches import Price, add_dlami, quotas, spot_prices
from spotrain.config import RunSpec
from spotrain.plan import zone_order

from .policies import justified
from .policy_check import (
    Call,
    Recorder,
    Request,
    allowed,
    check_policies,
    controller_policy,
    record_operations,
)

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")

R = "us-east-1"
P3 = "p3.16xlarge"


@pytest.fixture
def world(isolated_env: Path) -> Iterator[tuple[boto3.Session, stack.InfraOutputs]]:
    """moto with the stack deployed (before recording: init is an administrator's job), prices, a
    DLAMI and quotas."""
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    rows = [
        Price(R, f"{R}{z}", P3, now - timedelta(hours=h), 7.0 + i)
        for i, (z, h) in enumerate([("a", 2), ("b", 3)])
    ]
    with mock_aws(), spot_prices(rows), quotas({"L-7212CCBC": 256}):
        add_dlami(R, name=V100_DLAMI, ssm_name=V100_SSM)
        add_dlami(R, name=PYTORCH_DLAMI, ssm_name=PYTORCH_SSM)
        sess = boto3.Session(region_name=R)
        yield sess, stack.init(sess, region=R).outputs


def attempt_request(sess: boto3.Session, spec: instances.LaunchSpec, home: Path) -> AttemptRequest:
    """One attempt of `spec` in R, in the plan's zone order."""
    order = zone_order(sess, RunSpec(recipe="digits", instance=P3))
    return AttemptRequest(spec=spec, regions=[R], state_dir=home, order=order, ssh_cidr="203.0.113.7")


def launch_flow(sess: boto3.Session, out: stack.InfraOutputs, home: Path, run_id: str) -> None:
    """prices, then one attempt with the instance profile and a data snapshot, wait, end it."""
    prices.quote(instance_type=P3, region=R, sess=sess)
    ec2 = sess.client("ec2", region_name=R)  # the test's own client: not recorded
    snap = ec2.create_snapshot(VolumeId=ec2.create_volume(AvailabilityZone=f"{R}a", Size=50)["VolumeId"])
    spec = instances.LaunchSpec(
        run_id=run_id, attempt_id="a1", owner="alice", instance_type=P3, root_gb=200,
        data_snapshot_id=snap["SnapshotId"], instance_profile=out.instance_profile_name, user_data="#!/bin/bash",
    )  # fmt: skip
    started = start_attempt(sess, attempt_request(sess, spec, home))
    iid = started.instance.instance_id
    lifecycle.wait(sess, region=R, instance_id=iid, until="running", deadline_s=10)
    lifecycle.describe(sess, region=R, instance_id=iid)
    lifecycle.terminate(sess, region=R, instance_ids=[iid])


def sweep_flow(sess: boto3.Session, out: stack.InfraOutputs, home: Path) -> None:
    launch_flow_no_end(sess, out, home, "r-orphan")
    network.ensure_security_group(
        sess, region=R, run_id="r-orphan", owner="alice", ssh_cidr="198.51.100.9/32"
    )
    ec2 = sess.client("ec2", region_name=R)  # leftovers a killed controller could leave: made by the test
    left = [
        {"ResourceType": kind, "Tags": [{"Key": "spotrain:run", "Value": "r-orphan"}]} for kind in ("volume",)
    ]
    ec2.create_volume(AvailabilityZone=f"{R}a", Size=10, TagSpecifications=left)
    sir = ec2.request_spot_instances(
        LaunchSpecification={"ImageId": "ami-12c6146b", "InstanceType": "g5.xlarge"}
    )
    ec2.create_tags(
        Resources=[sir["SpotInstanceRequests"][0]["SpotInstanceRequestId"]],
        Tags=[{"Key": "spotrain:run", "Value": "r-orphan"}],
    )
    found = sweep.find_leftovers(sess, regions=[R], run_id="r-orphan")
    sweep.sweep(sess, found, deadline_s=10)
    sweep.find_leftovers(sess, regions=[R])
    network.delete_key_pairs(client(sess, "ec2", R))  # `down --all`: spotrain's key pairs too


def multinode_flow(sess: boto3.Session, out: stack.InfraOutputs, home: Path) -> None:
    """Two nodes in the run's placement group and peer-open security group, then `down`'s sweep."""
    spec = instances.LaunchSpec(
        run_id="r-nodes", attempt_id="a1", owner="alice", instance_type=P3, root_gb=100,
        instance_profile=out.instance_profile_name, nodes=2,
    )  # fmt: skip
    start_attempt(sess, attempt_request(sess, spec, home))
    sweep.sweep(sess, sweep.find_leftovers(sess, regions=[R], run_id="r-nodes"), deadline_s=10)


def launch_flow_no_end(sess: boto3.Session, out: stack.InfraOutputs, home: Path, run_id: str) -> None:
    spec = instances.LaunchSpec(
        run_id=run_id, attempt_id="a1", owner="alice", instance_type=P3, root_gb=100,
        instance_profile=out.instance_profile_arn,
    )  # fmt: skip
    start_attempt(sess, attempt_request(sess, spec, home))


def mirror_flow(bucket: str, tmp: Path) -> None:
    """The trainer's mirror on the instance: a multipart checkpoint, logs, pruning, then a restore."""
    from trainer.events import EventLog
    from trainer.mirror import Mirror, restore

    run_dir = tmp / "run"
    run_dir.mkdir()
    events = EventLog(run_dir / "events.jsonl")
    events.write("start")
    (run_dir / "train.log").write_text("step 1\n")
    mirror = Mirror(f"s3://{bucket}/runs/r1", run_dir, events, keep=1, attempt_id="a1")
    for step, size in ((1, 9 << 20), (2, 1024)):  # 9 MiB: boto3 uploads it in parts
        ckpt = run_dir / "ckpt" / f"step-{step:06d}"
        ckpt.mkdir(parents=True)
        (ckpt / "state.pt").write_bytes(b"x" * size)
        (ckpt / "manifest.json").write_text("{}")
        mirror.checkpoint(ckpt)
    mirror.close()
    restore(f"s3://{bucket}/runs/r1", tmp / "restored", events)


def controller_reads(sess: boto3.Session, out: stack.InfraOutputs) -> None:
    storage.list_checkpoints(sess, bucket=out.bucket, run_id="r1")
    storage.read_latest(sess, bucket=out.bucket, run_id="r1")
    storage.list_attempts(sess, bucket=out.bucket, run_id="r1")
    stack.state_file(R).unlink()
    stack.outputs(sess, region=R)  # init ran elsewhere: read the stack's outputs back
    instances.region_zones(sess, R)  # the plan checks --zone against the region's zones


def smoke_flow(sess: boto3.Session, out: stack.InfraOutputs, home: Path) -> None:
    """`spotrain smoke`'s real interruption: one FIS experiment on the run's instance, then removed."""
    from spotrain.cloud.aws import fis

    role = sess.client("iam").get_role(RoleName=out.fis_role_arn.rsplit("/", 1)[-1])["Role"]["Arn"]
    sent = fis.send_interruption(sess, region=R, instance_id="i-0abc", role_arn=role, run_id="r-smoke")
    fis.experiment_status(sess, sent)
    fis.leftover_templates(sess, region=R, run_id="r-smoke")
    fis.remove(sess, sent)


def test_every_call_of_every_flow_is_allowed_and_nothing_more(
    world, isolated_env: Path, tmp_path: Path
) -> None:
    sess, out = world
    with record_operations() as rec:
        launch_flow(sess, out, isolated_env, "r1")
        multinode_flow(sess, out, isolated_env)
        sweep_flow(sess, out, isolated_env)
        mirror_flow(out.bucket, tmp_path)
        controller_reads(sess, out)
        smoke_flow(sess, out, isolated_env)
    report = check_policies(rec, bucket=out.bucket)
    assert {"ec2:RunInstances", "iam:PassRole", "ec2:CreateTags", "ec2:TerminateInstances"} <= report.used[
        "controller"
    ]
    assert {
        "ec2:RevokeSecurityGroupIngress",
        "ec2:DeleteVolume",
        "ec2:CancelSpotInstanceRequests",
        "ec2:CreatePlacementGroup",
        "ec2:DeletePlacementGroup",
    } <= report.used["controller"]
    assert {"s3:PutObject", "s3:DeleteObject", "s3:GetObject", "s3:ListBucket"} <= report.used["trainer"]
    multipart = {c.operation for c in rec.of("trainer")}
    assert {"CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "DeleteObjects"} <= multipart
    unused = justified("Granted but not used")
    assert report.unused["controller"] <= unused, (
        f"granted, never used, not justified: {report.unused['controller'] - unused}"
    )
    assert report.unused["trainer"] <= unused, report.unused["trainer"]
    # What controller-policy.md says these flows use and a dry run does not, they do use.
    others = justified("Used by the other")
    assert others <= report.used["controller"], others - report.used["controller"]


def test_the_check_catches_what_the_policy_forbids(world) -> None:
    """The evaluator itself: untagged terminate, a foreign role, an on-demand launch, a bucket elsewhere."""
    policy = controller_policy()
    untagged = Request("ec2:TerminateInstances", "arn:aws:ec2:us-east-1:1:instance/i-1", {})
    tagged = Request("ec2:TerminateInstances", untagged.resource, {"aws:ResourceTag/spotrain:run": ["r1"]})
    assert not allowed(policy, untagged) and allowed(policy, tagged)
    ec2 = {"iam:PassedToService": ["ec2.amazonaws.com"]}
    assert allowed(
        policy, Request("iam:PassRole", "arn:aws:iam::1:role/spotrain/spotrain-InstanceRole-X", ec2)
    )
    assert not allowed(policy, Request("iam:PassRole", "arn:aws:iam::1:role/Admin", ec2))
    spot = {"aws:RequestTag/spotrain:run": ["r1"], "ec2:InstanceMarketType": ["spot"]}
    inst = "arn:aws:ec2:us-east-1:1:instance/*"
    assert allowed(policy, Request("ec2:RunInstances", inst, spot))
    assert not allowed(
        policy, Request("ec2:RunInstances", inst, {**spot, "ec2:InstanceMarketType": ["on-demand"]})
    )
    assert not allowed(policy, Request("ec2:CreateTags", "arn:aws:ec2:us-east-1:1:instance/i-1", {}))
    assert not allowed(policy, Request("s3:GetObject", "arn:aws:s3:::someone-else/runs/x"))
    assert not allowed(policy, Request("s3:PutObject", "arn:aws:s3:::spotrain-x/runs/x"))
    rec = Recorder([Call("controller", "ec2", "TerminateInstances", R, {"InstanceIds": ["i-1"]})])
    with pytest.raises(AssertionError, match="ec2:TerminateInstances on arn:aws:ec2:us-east-1"):
        check_policies(rec)
