"""moto with the image `spotrain init` checks a region for."""

from __future__ import annotations

import boto3
import pytest
from helpers import PYTORCH_DLAMI, PYTORCH_SSM

from spotrain.cloud.local.moto_patches import add_dlami


@pytest.fixture
def aws(aws: boto3.Session) -> boto3.Session:
    """The root `aws` session, with the PyTorch DLAMI published in us-east-1 and eu-west-1."""
    for region in ("us-east-1", "eu-west-1"):
        add_dlami(region, name=PYTORCH_DLAMI, ssm_name=PYTORCH_SSM)
    return aws
