"""The data's gp3 volume is provisioned for the recipe's read rate (issue 13, item 5): the plan sizes
it and shows its $/h, and the launch asks EC2 for that Throughput and Iops."""

from __future__ import annotations

from rich.console import Console

from spotrain import plan, render, volumes
from spotrain.cloud.aws import instances
from spotrain.cloud.aws.attempt import AttemptRequest, start_attempt
from spotrain.config import RunSpec

from .aws_fakes import NOW, P3
from .test_launch import R, ec2, order
from .test_launch import world as world  # the fixture


def make(sess, spec: RunSpec) -> plan.Plan:
    return plan.make_plan(
        sess,
        spec,
        measured_images_per_s=None,
        measured_cost_s=None,
        interruptions=0,
        instance_hours=0.0,
        now=NOW,
    )


def test_imagenet_on_8_v100s_gets_a_volume_faster_than_the_baseline_and_ec2_is_asked_for_it(
    world,
    isolated_env,
) -> None:
    client = ec2(world)
    snap = client.create_snapshot(
        VolumeId=client.create_volume(AvailabilityZone="us-east-1a", Size=150)["VolumeId"]
    )
    shown = make(world, RunSpec(recipe="imagenet", instance=P3, data=snap["SnapshotId"]))
    vol = shown.volume
    # ~5,200 images/s of ~110 KB: ~550 MiB/s, over four times the baseline's 125
    assert vol.mib_s > 500 and vol.iops >= vol.mib_s / volumes.MIB_S_PER_IOPS and vol.iops > 5000
    assert (shown.record.data_iops, shown.record.data_mib_s) == (vol.iops, vol.mib_s)
    assert vol.extra_usd_per_hour > 0
    text = _text(render.plan_table(RunSpec(recipe="imagenet", instance=P3, data=snap["SnapshotId"]), shown))
    assert f"{vol.iops} IOPS, {vol.mib_s} MiB/s" in text and "the GPUs read" in text

    spec = instances.LaunchSpec(
        run_id="r1", attempt_id="a1", owner="alice", instance_type=P3, root_gb=400,
        data_snapshot_id=snap["SnapshotId"], data_iops=shown.record.data_iops, data_mib_s=shown.record.data_mib_s,
    )  # fmt: skip
    # moto drops Throughput from the volume it creates, so the request itself is read (what EC2 got)
    asked: list[dict] = []
    world.events.register("before-parameter-build.ec2.RunInstances", lambda params, **_: asked.append(params))
    start_attempt(
        world,
        AttemptRequest(spec=spec, regions=[R], state_dir=isolated_env, order=order(), ssh_cidr="203.0.113.7"),
    )
    (data,) = [m["Ebs"] for m in asked[-1]["BlockDeviceMappings"] if m["DeviceName"] == "/dev/sdf"]
    assert (data["Iops"], data["Throughput"], data["VolumeType"]) == (vol.iops, vol.mib_s, "gp3")
    (root,) = [m["Ebs"] for m in asked[-1]["BlockDeviceMappings"] if m["DeviceName"] != "/dev/sdf"]
    assert "Throughput" not in root  # the data is on the snapshot's volume: the root keeps the baseline


def test_digits_keeps_the_baseline(world) -> None:
    shown = make(world, RunSpec(recipe="digits", instance=P3))
    assert (shown.volume.iops, shown.volume.mib_s) == (3000, 125) and not shown.volume.provisioned
    assert shown.volume.extra_usd_per_hour == 0
    assert "(the baseline)" in _text(render.plan_table(RunSpec(recipe="digits", instance=P3), shown))


def test_the_sizing_stays_inside_gp3s_bounds() -> None:
    top = volumes.size_volume(gb=100, images_per_s=1e6, bytes_per_sample=110_000)
    assert (top.iops, top.mib_s) == (volumes.MAX_IOPS, volumes.MAX_MIB_S)
    # $0.005 per IOPS-month over 3,000 and $0.04 per MiB/s-month over 125, over 730 h
    assert abs(top.extra_usd_per_hour - (13000 * 0.005 + 875 * 0.04) / 730) < 1e-9


def _text(table) -> str:
    console = Console(width=250, record=True)
    console.print(table)
    return console.export_text()
