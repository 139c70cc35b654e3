"""Spot launch on moto: zone failover, the quota gate, what the instance looks like, the orphan sweep."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from spotrain import plan
from spotrain.cloud import EndKind, NoCapacity
from spotrain.cloud.aws import cloud, instances, lifecycle, sweep
from spotrain.cloud.aws.attempt import AttemptRequest, StartedAttempt, start_attempt
from spotrain.cloud.aws.cloud import AwsCloud
from spotrain.config import RunSpec
from spotrain.errors import SpotrainError

from .aws_fakes import NOW, P3, add_dlami, fail_zones, history, interrupt, quotas, spot_prices

R = "us-east-1"
DLAMI = "Deep Learning Base Proprietary Nvidia Driver AMI (Amazon Linux 2) Version 71.6"  # for P3's V100
SSM = "/aws/service/deeplearning/ami/x86_64/base-proprietary-nvidia-driver-amazon-linux-2/latest/ami-id"
CAPACITY = "InsufficientInstanceCapacity"


@pytest.fixture
def world(aws: boto3.Session) -> Iterator[boto3.Session]:
    """Prices in us-east-1 (1a 7.34, 1c 9.50, 1b 11.00) and us-west-2, a DLAMI in both, quota 256."""
    for region in (R, "us-west-2"):
        add_dlami(region, name=DLAMI, ssm_name=SSM)
    with spot_prices(history(R) + history("us-west-2")), quotas({"L-7212CCBC": 256, "L-3819A6DF": 64}):
        yield aws


def order(regions: Sequence[str] = (R,), demote: Sequence[str] = ()) -> instances.ZoneOrder:
    """The plan's zone order for one attempt of P3 in `regions` (the fixture's prices at NOW)."""
    sess = boto3.Session(region_name=R)
    quotes = instances.region_quotes(sess, instance_type=P3, regions=regions, now=NOW)
    return plan.order_zones(quotes, instance_type=P3, demote=demote)


def request(
    home: Path, run_id: str = "r1", *, regions: Sequence[str] = (R,), demote: Sequence[str] = (), **kw: Any
) -> AttemptRequest:
    spec = instances.LaunchSpec(run_id=run_id, attempt_id="a1", owner="alice", instance_type=P3, root_gb=400)
    return AttemptRequest(
        spec=spec,
        regions=list(regions),
        state_dir=home,
        order=order(regions, demote),
        ssh_cidr="203.0.113.7",
        **kw,
    )


def ec2(sess: boto3.Session, region: str = R) -> Any:
    return sess.client("ec2", region_name=region)


def live(sess: boto3.Session, region: str = R) -> list[str]:
    return [i["InstanceId"] for i in lifecycle.run_instances_live(ec2(sess, region), None)]


def test_first_two_zones_out_of_capacity_lands_in_the_third(world, isolated_env) -> None:
    asked = fail_zones(world, {"us-east-1a": CAPACITY, "us-east-1c": "SpotMaxPriceTooLow"})
    started = start_attempt(world, request(isolated_env))
    assert asked == ["us-east-1a", "us-east-1c", "us-east-1b"]
    assert started.instance.zone == "us-east-1b" and started.instance.spot_usd_per_hour == 11.00
    assert [(f.zone, f.code) for f in started.instance.tried] == [
        ("us-east-1a", CAPACITY),
        ("us-east-1c", "SpotMaxPriceTooLow"),
    ]


def test_all_zones_failing_lists_every_zone_and_why(world, isolated_env) -> None:
    zones = {"us-east-1a": CAPACITY, "us-east-1b": CAPACITY, "us-east-1c": "SpotMaxPriceTooLow"}
    fail_zones(world, zones)
    with pytest.raises(SpotrainError) as err:
        start_attempt(world, request(isolated_env))
    for zone, code in zones.items():
        assert f"{R}/{zone}: {code}" in err.value.message
    assert live(world) == [] and sweep.find_leftovers(world, regions=[R]) == []  # group deleted too


def test_quota_too_low_is_said_before_any_launch_call(world, isolated_env) -> None:
    asked = fail_zones(world, {})
    with quotas({"L-7212CCBC": 32}), pytest.raises(SpotrainError) as err:
        start_attempt(world, request(isolated_env))
    assert asked == []
    assert "All P Spot Instance Requests" in err.value.message and "32" in err.value.message
    assert "needs 64" in err.value.message
    assert "request-service-quota-increase" in err.value.hint and "L-7212CCBC" in err.value.hint
    assert sweep.find_leftovers(world, regions=[R]) == []
    assert not isinstance(err.value, NoCapacity)  # 32 vCPUs never hold a 64-vCPU p3.16xlarge: no wait


def test_a_quota_filled_by_an_instance_still_counted_is_worth_waiting_for(world, isolated_env) -> None:
    # 64 vCPUs would hold the p3.16xlarge, but the first one (just ended, say) still counts: AWS updates
    # the usage late, so --auto-resume waits and tries again (NoCapacity) rather than giving up.
    with quotas({"L-7212CCBC": 64}):
        start_attempt(world, request(isolated_env))
        with pytest.raises(NoCapacity, match="64 in use"):
            start_attempt(world, request(isolated_env, run_id="r2"))


def test_the_instance_is_spot_imdsv2_encrypted_tagged_and_ssh_only(world, isolated_env) -> None:
    started: StartedAttempt = start_attempt(world, request(isolated_env))
    client = ec2(world)
    inst = client.describe_instances(InstanceIds=[started.instance.instance_id])["Reservations"][0][
        "Instances"
    ][0]
    assert inst["InstanceLifecycle"] == "spot" and inst["InstanceType"] == P3
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert inst["Placement"]["AvailabilityZone"] == "us-east-1a"  # the cheapest zone
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags["spotrain:run"] == "r1" and tags["spotrain:owner"] == "alice"
    vol_ids = [m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"]]
    vols = client.describe_volumes(VolumeIds=vol_ids)["Volumes"]
    assert vols and all(v["Encrypted"] for v in vols)
    root = next(v for v in vols if v["Size"] == 400)
    assert root["VolumeType"] == "gp3" and {"Key": "spotrain:run", "Value": "r1"} in root["Tags"]
    # The groups sit on the primary interface (moto 5 leaves the instance's own SecurityGroups empty
    # when they come through NetworkInterfaces; EC2 lists them in both places).
    (eni,) = inst["NetworkInterfaces"]
    assert [g["GroupId"] for g in eni["Groups"]] == [started.security_group.group_id]
    (sg,) = client.describe_security_groups(GroupIds=[started.security_group.group_id])["SecurityGroups"]
    assert [(p["IpProtocol"], p["FromPort"], p["ToPort"]) for p in sg["IpPermissions"]] == [("tcp", 22, 22)]
    assert [r["CidrIp"] for r in sg["IpPermissions"][0]["IpRanges"]] == ["203.0.113.7/32"]
    assert not sg["IpPermissions"][0].get("Ipv6Ranges")
    assert inst["KeyName"] == started.key.name and "V100" in started.image.reason
    assert tags["spotrain:ssh-user"] == "ec2-user"  # Amazon Linux: the proprietary-driver image for V100


def test_user_data_tells_the_bootstrap_the_gpus_the_user_and_the_torch(world, isolated_env) -> None:
    req = request(isolated_env)
    spec = instances.LaunchSpec(**{**req.spec.__dict__, "user_data": "#!/usr/bin/env bash\nset -e\n"})
    started = start_attempt(world, AttemptRequest(**{**req.__dict__, "spec": spec}))
    iid = started.instance.instance_id
    raw = ec2(world).describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]
    lines = base64.b64decode(raw).decode().splitlines()
    assert lines[0] == "#!/usr/bin/env bash" and lines[-1] == "set -e"
    assert "export SPOTRAIN_GPUS=8" in lines and "export SPOTRAIN_LOGIN_USER=ec2-user" in lines
    assert "export SPOTRAIN_TORCH_PIP='torch==2.6.0 torchvision==0.21.0 numpy scikit-learn boto3'" in lines
    status = lifecycle.describe(world, region=R, instance_id=iid)
    assert cloud.ssh_user(status) == "ec2-user"


def test_the_zone_that_just_interrupted_the_run_is_tried_last(world, isolated_env) -> None:
    first = start_attempt(world, request(isolated_env))
    interrupt(R, first.instance.instance_id)
    status = lifecycle.describe(world, region=R, instance_id=first.instance.instance_id)
    assert status.end == EndKind.SPOT_INTERRUPTION and status.reason_code == "Server.SpotInstanceTermination"
    asked = fail_zones(world, {"us-east-1c": CAPACITY, "us-east-1b": CAPACITY})
    again = start_attempt(world, request(isolated_env, demote=[first.instance.zone]))
    assert asked == ["us-east-1c", "us-east-1b", "us-east-1a"] and again.instance.zone == "us-east-1a"


def test_a_full_region_moves_to_the_next(world, isolated_env) -> None:
    asked = fail_zones(world, {"us-east-1a": "MaxSpotInstanceCountExceeded"})
    started = start_attempt(world, request(isolated_env, regions=[R, "us-west-2"]))
    assert asked == ["us-east-1a", "us-west-2a"]  # the region error skips 1c and 1b
    assert (started.instance.region, started.instance.zone) == ("us-west-2", "us-west-2a")
    assert live(world, "us-west-2") == [started.instance.instance_id]


def test_wait_and_why_an_instance_ended(world, isolated_env) -> None:
    started = start_attempt(world, request(isolated_env))
    iid = started.instance.instance_id
    up = lifecycle.wait(world, region=R, instance_id=iid, deadline_s=10)
    assert (up.state, up.end, up.spot) == ("running", EndKind.RUNNING, True)
    lifecycle.terminate(world, region=R, instance_ids=[iid])
    down = lifecycle.wait(world, region=R, instance_id=iid, until="terminated", deadline_s=10)
    assert (down.state, down.end, down.reason_code) == (
        "terminated",
        EndKind.USER,
        "Client.UserInitiatedShutdown",
    )
    assert lifecycle.end_kind("terminated", "Server.InternalError") == EndKind.ERROR


def test_orphan_sweep_removes_exactly_the_runs_resources(world, isolated_env) -> None:
    one = [start_attempt(world, request(isolated_env, "r1")) for _ in range(2)]
    two = start_attempt(world, request(isolated_env, "r2"))
    found = sweep.find_leftovers(world, regions=[R, "us-west-2"], run_id="r1")
    assert sorted((lo.kind, lo.resource_id) for lo in found) == sorted(
        [("instance", s.instance.instance_id) for s in one]
        + [("security-group", one[0].security_group.group_id)]
    )
    assert len(sweep.find_leftovers(world, regions=[R], run_id=None)) == 5  # --all: both runs
    result = sweep.sweep(world, found, deadline_s=10)
    assert sorted(result.terminated) == sorted(s.instance.instance_id for s in one) and not result.failed
    assert result.deleted == [one[0].security_group.group_id]
    assert live(world) == [two.instance.instance_id]
    groups = ec2(world).describe_security_groups(Filters=[{"Name": "tag-key", "Values": ["spotrain:run"]}])
    assert [g["GroupId"] for g in groups["SecurityGroups"]] == [two.security_group.group_id]
    assert sweep.find_leftovers(world, regions=[R], run_id="r1") == []


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"ssh_cidr": "203.0.113.7/33"}, "'203.0.113.7/33'"),
        ({"ssh_cidr": "2001:db8::7/128"}, "'2001:db8::7/128' is IPv6"),
        ({"ami": "ami-0123456789abcdef0"}, "'ami-0123456789abcdef0'"),
        ({"regions": ["us-east-9"]}, "'us-east-9'"),
        ({"regions": ["eu-north-1"]}, "not offered as spot in eu-north-1"),
        ({"instance_type": "p3.16xlarg"}, "'p3.16xlarg'"),
    ],
)
def test_bad_input_is_one_message_and_leaves_nothing(world, isolated_env, change, needle) -> None:
    with pytest.raises(SpotrainError) as err:  # a bad region is refused by the plan's price reading
        req = request(isolated_env, regions=change.pop("regions", [R]))
        if "instance_type" in change:
            req = AttemptRequest(
                **{**req.__dict__, "spec": instances.LaunchSpec(**{**req.spec.__dict__, **change})}
            )
        else:
            req = AttemptRequest(**{**req.__dict__, **change})
        start_attempt(world, req)
    assert needle in err.value.message and err.value.hint and err.value.exit_code == 2
    assert live(world) == [] and sweep.find_leftovers(world, regions=[R]) == []


def test_missing_credentials_name_the_chain(world, isolated_env, monkeypatch) -> None:
    monkeypatch.setattr(world._session, "get_credentials", lambda: None)
    with pytest.raises(SpotrainError) as err:
        start_attempt(world, request(isolated_env))
    assert "no usable AWS credentials" in err.value.message and "AWS_PROFILE" in err.value.message


def test_data_volume_from_a_snapshot_and_the_instance_profile(world, isolated_env) -> None:
    client = ec2(world)
    vol = client.create_volume(AvailabilityZone="us-east-1a", Size=150)
    snap = client.create_snapshot(VolumeId=vol["VolumeId"])["SnapshotId"]
    iam = world.client("iam")
    iam.create_instance_profile(InstanceProfileName="spotrain-instance")
    spec = instances.LaunchSpec(
        run_id="r3", attempt_id="a1", owner="alice", instance_type=P3, root_gb=200,
        data_snapshot_id=snap, instance_profile="spotrain-instance", max_price=12.0,
    )  # fmt: skip
    started = start_attempt(
        world,
        AttemptRequest(spec=spec, regions=[R], state_dir=isolated_env, order=order(), ssh_cidr="203.0.113.7"),
    )
    params = instances.run_params(spec, "us-east-1a", started.resources[R])
    assert params["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "12.00000"
    assert params["IamInstanceProfile"] == {"Name": "spotrain-instance"}
    inst = client.describe_instances(InstanceIds=[started.instance.instance_id])["Reservations"][0][
        "Instances"
    ][0]
    assert inst["IamInstanceProfile"]["Arn"].endswith("instance-profile/spotrain-instance")
    data = [m for m in inst["BlockDeviceMappings"] if m["DeviceName"] == "/dev/sdf"]
    (vol,) = client.describe_volumes(VolumeIds=[data[0]["Ebs"]["VolumeId"]])["Volumes"]
    assert vol["SnapshotId"] == snap and vol["Encrypted"] and vol["Size"] == 150


def test_a_region_without_the_image_is_skipped_and_said(world, isolated_env) -> None:
    fail_zones(world, {f"us-east-1{z}": CAPACITY for z in "abc"})
    with spot_prices(history(R) + history("us-east-2")), pytest.raises(SpotrainError) as err:
        start_attempt(world, request(isolated_env, regions=[R, "us-east-2"]))
    assert "us-east-2/*: NoImage: no Deep Learning AMI" in err.value.message
    lines = err.value.message.splitlines()
    assert (
        sum(f"/us-east-1{z}: {CAPACITY}" in line for line in lines for z in "abc") == 3 and live(world) == []
    )


def test_a_zone_without_a_default_subnet_is_skipped_and_the_next_gets_its_own(world, isolated_env) -> None:
    client = ec2(world)
    subnets = {s["AvailabilityZone"]: s["SubnetId"] for s in client.describe_subnets()["Subnets"]}
    client.delete_subnet(SubnetId=subnets["us-east-1a"])  # the cheapest zone has no default subnet
    started = start_attempt(world, request(isolated_env))
    assert started.instance.zone == "us-east-1c"  # the next cheapest, not an error
    (failure,) = started.instance.tried
    assert (failure.zone, failure.code) == ("us-east-1a", "NoDefaultSubnet")
    assert "create-default-subnet --availability-zone us-east-1a" in failure.message
    params = instances.run_params(request(isolated_env).spec, "us-east-1c", started.resources[R])
    (eni,) = params["NetworkInterfaces"]
    assert eni["SubnetId"] == subnets["us-east-1c"] and eni["AssociatePublicIpAddress"] is True
    assert eni["Groups"] == [started.security_group.group_id] and "SecurityGroupIds" not in params
    inst = client.describe_instances(InstanceIds=[started.instance.instance_id])["Reservations"][0]
    assert inst["Instances"][0]["SubnetId"] == subnets["us-east-1c"]


def test_a_second_region_without_the_snapshot_is_skipped_with_why(world, isolated_env) -> None:
    vol = ec2(world).create_volume(AvailabilityZone="us-east-1a", Size=150)
    snap = ec2(world).create_snapshot(VolumeId=vol["VolumeId"])["SnapshotId"]
    req = request(isolated_env, regions=["us-west-2", R])  # the snapshot is in the second one only
    spec = instances.LaunchSpec(**{**req.spec.__dict__, "data_snapshot_id": snap})
    started = start_attempt(world, AttemptRequest(**{**req.__dict__, "spec": spec}))
    assert started.instance.region == R and live(world, "us-west-2") == []
    (failure,) = started.instance.tried
    assert (failure.region, failure.zone, failure.code) == ("us-west-2", "*", "NoSnapshot")
    assert snap in failure.message and "copy-snapshot" in failure.message
    fail_zones(world, {f"us-east-1{z}": CAPACITY for z in "abc"})
    with pytest.raises(SpotrainError) as err:  # and when the home region is full too: one message
        start_attempt(world, AttemptRequest(**{**req.__dict__, "spec": instances.LaunchSpec(
            **{**spec.__dict__, "attempt_id": "a2"})}))  # fmt: skip
    assert f"us-west-2/*: NoSnapshot: data snapshot {snap}" in err.value.message


def test_an_instance_gone_from_ec2_reads_as_terminated_with_why(world, isolated_env) -> None:
    # EC2 answers InvalidInstanceID.NotFound an hour after a termination; moto does for an unknown id.
    old = "i-0123456789abcdef0"
    status = lifecycle.describe(world, region=R, instance_id=old)
    assert (status.state, status.end, status.reason_code) == (
        "terminated",
        EndKind.UNKNOWN,
        "InvalidInstanceID.NotFound",
    )
    assert old in status.reason_message and "over an hour ago" in status.reason_message
    assert AwsCloud(regions=[R]).describe(R, old).state == "terminated"


def test_terminating_an_instance_ec2_forgot_is_done_and_the_others_still_end(world, isolated_env) -> None:
    # resume of a run whose instance ended long ago (or a fresh dry-run's moto) terminates it again:
    # InvalidInstanceID.NotFound is what EC2 answers, and it must not stop the rest of the call.
    live = start_attempt(world, request(isolated_env)).instance.instance_id
    lifecycle.terminate(world, region=R, instance_ids=["i-0123456789abcdef0"])
    lifecycle.terminate(world, region=R, instance_ids=["i-0123456789abcdef0", live])
    assert lifecycle.describe(world, region=R, instance_id=live).state in ("shutting-down", "terminated")


def test_a_fresh_controller_finds_the_instances_key_in_the_state_dir(
    world, isolated_env, monkeypatch
) -> None:
    # Issue 13 item 3: `spotrain resume` and `logs -f` run in a new process whose AwsCloud never called
    # start_attempt; the key that SSH needs is the one ensure_key_pair keeps in the state directory
    # under the instance's key pair name.
    from spotrain.settings import Settings
    from spotrain.store import Store
    from spotrain.workspace import Controller

    launching = AwsCloud(regions=[R])
    started = launching.start_attempt(request(isolated_env))
    assert started.key.private_key_path and launching.key_file == Path(started.key.private_key_path)

    fresh = Controller(Settings(state_dir=isolated_env), False, isolated_env, Store.open(isolated_env))
    targets: list = []
    status = fresh.cloud.describe(R, started.instance.instance_id)
    targets.append(fresh.cloud.target(status))  # before: SpotrainError "no private key known"
    fresh.close()
    assert [(t.host, t.user, t.key_file, t.instance_id) for t in targets] == [
        (status.public_ip, cloud.ssh_user(status), Path(started.key.private_key_path), status.instance_id)
    ]


def test_the_plan_shows_the_zones_every_region_offers_and_the_launch_tries_exactly_those(
    world, isolated_env
) -> None:
    # Issue 12: --zone in the second region was shown from the first region only and tried from all
    spec = RunSpec(recipe="digits", instance=P3, regions=[R, "us-west-2"], zones=["us-east-1c", "us-west-2b"])
    shown = plan.make_plan(
        world,
        spec,
        measured_images_per_s=None,
        measured_cost_s=None,
        interruptions=0,
        instance_hours=0.0,
        now=NOW,
    )
    assert [(c.region, c.zone) for c in shown.order.candidates] == [
        (R, "us-east-1c"),
        ("us-west-2", "us-west-2b"),
    ]
    assert shown.order == plan.zone_order(world, spec, now=NOW)
    asked = fail_zones(world, {"us-east-1c": CAPACITY, "us-west-2b": CAPACITY})
    req = AttemptRequest(
        spec=request(isolated_env).spec, regions=spec.regions, state_dir=isolated_env, order=shown.order
    )
    with pytest.raises(SpotrainError):
        start_attempt(world, replace(req, ssh_cidr="203.0.113.7"))
    assert asked == ["us-east-1c", "us-west-2b"]
