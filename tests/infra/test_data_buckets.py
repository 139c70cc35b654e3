"""`spotrain init --data-bucket`: the instance role may read the datasets the stack names, and the plan
refuses an s3:// --data outside them before anything is launched (issue 13, item 5)."""

from __future__ import annotations

import ast

import pytest

from spotrain import plan
from spotrain.cli import main
from spotrain.cloud.aws import stack
from spotrain.config import RunSpec
from spotrain.errors import SpotrainError

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")

R = "us-east-1"


def role_policies(aws, outputs: stack.InfraOutputs) -> dict[str, dict]:
    iam = aws.client("iam")
    name = outputs.instance_role_arn.rsplit("/", 1)[1]
    found = {}
    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
        # moto keeps an inline policy from CloudFormation as the Python repr of the template's mapping
        found[policy] = ast.literal_eval(doc) if isinstance(doc, str) else doc
    return found


def test_the_role_may_list_and_read_the_named_dataset_prefix(aws, isolated_env) -> None:
    done = stack.init(aws, region=R, data_buckets=["my-datasets/imagenet", "s3://other-data"])
    data = role_policies(aws, done.outputs)["spotrain-read-data"]["Statement"]
    by_sid = {s["Sid"]: s for s in data}
    assert by_sid["ReadData"]["Action"] == "s3:GetObject"
    assert sorted(by_sid["ReadData"]["Resource"]) == [
        "arn:aws:s3:::my-datasets/imagenet/*",
        "arn:aws:s3:::other-data/*",
    ]
    listing = by_sid["ListDataPrefixes"]
    assert listing["Action"] == "s3:ListBucket"
    assert sorted(listing["Resource"]) == ["arn:aws:s3:::my-datasets", "arn:aws:s3:::other-data"]
    assert "imagenet/*" in listing["Condition"]["StringLike"]["s3:prefix"]
    # a rerun without --data-bucket keeps the list
    assert stack.init(aws, region=R).status == "up to date"


def test_no_data_bucket_no_data_statement(aws, isolated_env) -> None:
    done = stack.init(aws, region=R)
    assert list(role_policies(aws, done.outputs)) == ["spotrain-runs-prefix"]


def test_data_outside_the_grants_is_refused_at_plan_time_with_the_init_to_run(aws, isolated_env) -> None:
    stack.init(aws, region=R, data_buckets=["my-datasets/imagenet"])
    plan.check_data_access(aws, RunSpec(recipe="imagenet", data="s3://my-datasets/imagenet/train"))
    plan.check_data_access(aws, RunSpec(recipe="imagenet", data="s3://my-datasets/imagenet"))
    for outside, grant in [
        ("s3://my-datasets/imagenet21k", "my-datasets/imagenet21k"),  # a prefix ends at a slash
        ("s3://elsewhere/imagenet/", "elsewhere/imagenet"),
    ]:
        with pytest.raises(SpotrainError) as err:
            plan.check_data_access(aws, RunSpec(recipe="imagenet", data=outside))
        assert outside in err.value.message and "my-datasets/imagenet" in err.value.message
        assert f"spotrain init --region {R} --data-bucket {grant}" in err.value.hint


def test_init_takes_repeatable_data_buckets_and_refuses_a_bad_one(aws, isolated_env) -> None:
    main(["init", "--region", R, "--data-bucket", "a-datasets/x", "--data-bucket", "b-datasets"])
    done = stack.init(aws, region=R)
    assert "spotrain-read-data" in role_policies(aws, done.outputs)
    with pytest.raises(SpotrainError, match="not a bucket or bucket/prefix"):
        stack.init(aws, region=R, data_buckets=["Bad_Bucket/x"])
