"""The controller put together for real AWS (on moto): the cloud is made for the run's regions, and a
launch without `spotrain init` or --bucket is refused before anything is created."""

from __future__ import annotations

import pytest
from moto import mock_aws

from spotrain.cloud.aws.cloud import AwsCloud
from spotrain.controller import open_controller
from spotrain.errors import SpotrainError


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
