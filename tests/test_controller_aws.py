"""The controller put together for real AWS (on moto): the cloud is made for the run's regions, and a
launch without `spotrain init` or --bucket is refused before anything is created."""

from __future__ import annotations

import pytest
from moto import mock_aws

from spotrain.cloud.aws.cloud import AwsCloud
from spotrain.config import RunSpec
from spotrain.errors import SpotrainError
from spotrain.workspace import open_controller


@mock_aws
def test_aws_cloud_follows_the_runs_regions_and_needs_a_bucket() -> None:
    with open_controller(dry_run=False) as ctl:
        ctl.regions = ["us-west-2", "us-east-1"]
        cloud = ctl.cloud
        assert isinstance(cloud, AwsCloud) and cloud.regions == ["us-west-2", "us-east-1"]
        with pytest.raises(SpotrainError) as err:
            cloud.bucket()
        assert "us-west-2" in err.value.message and "spotrain init --region us-west-2" in err.value.hint
        assert cloud.find_instances("no-such-run") == []


@mock_aws
def test_given_bucket_is_used() -> None:
    with open_controller(dry_run=False) as ctl:
        ctl.bucket = "my-checkpoints"
        assert ctl.cloud.bucket() == "my-checkpoints"


def test_user_data_is_the_bootstrap_with_the_runs_settings() -> None:
    script = AwsCloud(regions=["us-east-1"], bucket="b").user_data(
        RunSpec(recipe="imagenet", data="s3://my-data/imagenet")
    )
    assert script.startswith("#!/usr/bin/env bash\nexport SPOTRAIN_DATA_S3=s3://my-data/imagenet\n")
    assert script.count("#!") == 1 and "set -euo pipefail" in script and "ready" in script


def test_wait_ready_reads_the_marker_and_reports_a_failed_bootstrap(tmp_path, monkeypatch) -> None:
    from spotrain.remote import LocalTransport

    cloud, transport = AwsCloud(regions=["us-east-1"], bucket="b"), LocalTransport(tmp_path / "instance")
    monkeypatch.setattr(cloud.machines, "boot_dir", lambda instance_id: str(tmp_path))  # not /opt/spotrain
    with pytest.raises(SpotrainError, match="not ready after 0 s"):
        cloud.wait_ready(transport, "i-1", deadline_s=0, poll_s=0.01)
    (tmp_path / "failed").write_text("no python with torch found\n")
    with pytest.raises(SpotrainError, match="bootstrap failed: no python with torch found"):
        cloud.wait_ready(transport, "i-1", deadline_s=5, poll_s=0.01)
    (tmp_path / "ready").write_text(
        "SPOTRAIN_PYTHON=/opt/pytorch/bin/python\nSPOTRAIN_DATA=/opt/dlami/nvme/data\n"
    )
    assert cloud.wait_ready(transport, "i-1", deadline_s=5, poll_s=0.01) == {
        "SPOTRAIN_PYTHON": "/opt/pytorch/bin/python",
        "SPOTRAIN_DATA": "/opt/dlami/nvme/data",
    }
