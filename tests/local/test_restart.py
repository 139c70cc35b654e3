"""A controller killed and started again gets a fresh moto (it lived in the dead process): the new
LocalCloud on the same state directory re-registers the instance under its old id, so reconcile finds
it by tag, reopens its IMDS on the same port, and reloads the checkpoint bucket."""

from __future__ import annotations

from pathlib import Path

from helpers import wait_for

from spotrain.cloud import EndKind
from spotrain.cloud.local import BUCKET, LocalCloud

from .local_helpers import launch


def test_a_new_cloud_on_the_same_state_finds_the_live_instance(tmp_path: Path) -> None:
    state = tmp_path / "dry-run"
    first = LocalCloud(state, boot_delay_s=0.0, notice_grace_s=1.0)
    started = launch(first)
    gone = launch(first, "run2")
    first.terminate(gone.instance.region, [gone.instance.instance_id])
    instance_id = started.instance.instance_id
    env = first.instance_env(instance_id)
    first.session().client("s3").put_object(Bucket=BUCKET, Key="runs/run1/ckpt/LATEST", Body=b"step-000042")
    first.close()  # as far as moto is concerned, the same as the process dying

    second = LocalCloud(state, boot_delay_s=0.0, notice_grace_s=1.0)
    try:
        found = second.find_instances("run1")
        assert [s.instance_id for s in found] == [instance_id]
        assert found[0].zone == started.instance.zone and found[0].tags["spotrain:attempt"] == "a1"
        assert second.find_instances("run2") == []  # an ended instance stays ended
        assert second.instance_env(instance_id)["SPOTRAIN_IMDS_URL"] == env["SPOTRAIN_IMDS_URL"]
        assert second.endpoint == env["AWS_ENDPOINT_URL"]  # the old port was free, so taken again
        # Reachable from the fresh process as a real one is: a public address, its key pair's key found.
        assert found[0].public_ip and found[0].key_name == started.key.name, found[0]
        assert second.target(found[0]).home == second.instance_dir(instance_id)
        body = second.session().client("s3").get_object(Bucket=BUCKET, Key="runs/run1/ckpt/LATEST")["Body"]
        assert body.read() == b"step-000042"
        second.inject_interruption(instance_id)  # no trainer there: reclaimed after the grace
        ended = wait_for(
            lambda: (s := second.describe("us-east-1", instance_id)).state == "terminated" and s, 5, "reclaim"
        )
        assert ended.end is EndKind.SPOT_INTERRUPTION
        assert second.sweep("run1").failed == []
    finally:
        second.close()
    third = LocalCloud(state, boot_delay_s=0.0)
    try:
        assert third.find_instances("run1") == []
    finally:
        third.close()
