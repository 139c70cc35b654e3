"""infra/spotrain.yaml and `spotrain init` on moto: lint, deploy, rerun, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from spotrain.cli import main
from spotrain.cloud.aws import stack
from spotrain.errors import SpotrainError

from .policy_check import REPO, load_template

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")

R = "us-east-1"


def inject(sess: boto3.Session, event: str, code: str, message: str, status: int = 400) -> None:
    """Answer `event` (before-call.SERVICE.OPERATION) with an AWS error, as botocore would get it."""

    def answer(**_: Any) -> Any:
        meta = {"HTTPStatusCode": status}
        return AWSResponse("https://aws.invalid/", status, {}, None), {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": meta,
        }

    sess.events.register(event, answer)


def test_cfn_lint_is_clean() -> None:
    cfn_lint = shutil.which("cfn-lint") or str(REPO / ".venv" / "bin" / "cfn-lint")
    done = subprocess.run([cfn_lint, str(REPO / "infra" / "spotrain.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_template_says_what_moto_ignores() -> None:
    """moto drops the public access block, versioning, lifecycle and bucket policy (notes/moto.md #10),
    so they are read from the template itself."""
    res = load_template()["Resources"]
    props = res["Bucket"]["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert (
        rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        == 1
    )
    assert "NoncurrentVersionExpiration" in rules["expire-old-checkpoint-versions"]
    (deny,) = res["BucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    statements = res["InstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert {s["Sid"] for s in statements} == {
        "ListRunsPrefix",
        "ReadWriteRunsPrefix",
        "DetachedAttemptPrice",  # a detached run's supervisor (tests/detached/test_detached_policy.py)
        "EndOwnDetachedRun",
    }


def test_init_deploys_and_stores_the_outputs(aws, isolated_env: Path) -> None:
    done = stack.init(aws, region=R)
    assert done.status == "created" and done.outputs.bucket == f"spotrain-123456789012-{R}"
    assert done.state_file == isolated_env / f"infra-{R}.json"
    assert stack.load_outputs(R) == done.outputs
    assert ":role/spotrain/" in done.outputs.instance_role_arn
    assert ":instance-profile/spotrain/" in done.outputs.instance_profile_arn
    iam = aws.client("iam")
    profile = iam.get_instance_profile(InstanceProfileName=done.outputs.instance_profile_name)
    assert profile["InstanceProfile"]["Roles"][0]["Arn"] == done.outputs.instance_role_arn
    enc = aws.client("s3").get_bucket_encryption(Bucket=done.outputs.bucket)
    assert enc["ServerSideEncryptionConfiguration"]["Rules"]


def test_init_twice_changes_nothing(aws, isolated_env: Path) -> None:
    first = stack.init(aws, region=R, bucket="my-spotrain-ckpt")
    cfn = aws.client("cloudformation", region_name=R)
    events = len(cfn.describe_stack_events(StackName="spotrain")["StackEvents"])
    before = first.state_file.stat().st_mtime_ns
    again = stack.init(aws, region=R)  # no --bucket: keeps the stack's
    assert again.status == "up to date" and not again.changed and again.outputs == first.outputs
    assert len(cfn.describe_stack_events(StackName="spotrain")["StackEvents"]) == events
    assert first.state_file.stat().st_mtime_ns == before


def test_no_updates_from_cloudformation_means_up_to_date(aws, monkeypatch) -> None:
    """Real CloudFormation refuses an update that changes nothing; moto accepts it."""
    first = stack.init(aws, region=R)
    monkeypatch.setattr(stack, "template_body", lambda: stack.TEMPLATE.read_text() + "\n# touched\n")
    inject(
        aws, "before-call.cloudformation.UpdateStack", "ValidationError", "No updates are to be performed."
    )
    again = stack.init(aws, region=R)
    assert again.status == "up to date" and again.outputs == first.outputs


def test_a_changed_template_updates_the_stack(aws, monkeypatch) -> None:
    stack.init(aws, region=R)
    monkeypatch.setattr(stack, "template_body", lambda: stack.TEMPLATE.read_text() + "\n# v2\n")
    assert stack.init(aws, region=R).status == "updated"
    assert stack.init(aws, region=R).status == "up to date"


@pytest.mark.parametrize(
    "name, needle",
    [
        ("My_Bucket", "only lower-case letters"),
        ("ab", "3 to 63"),
        ("a" * 64, "3 to 63"),
        ("spot..train", "two dots"),
        ("192.168.1.10", "IP address"),
        ("xn--spotrain", "reserves"),
    ],
)
def test_invalid_bucket_name_creates_nothing(aws, name: str, needle: str) -> None:
    with pytest.raises(SpotrainError) as err:
        stack.init(aws, region=R, bucket=name)
    assert needle in err.value.message and name in err.value.message
    assert aws.client("cloudformation", region_name=R).list_stacks()["StackSummaries"] == []


def _bucket_in_another_account(name: str) -> None:
    sts = boto3.client("sts", region_name=R)
    creds = sts.assume_role(RoleArn="arn:aws:iam::111111111111:role/other", RoleSessionName="other")[
        "Credentials"
    ]
    other = boto3.client(
        "s3",
        region_name=R,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    other.create_bucket(Bucket=name)


def test_a_bucket_someone_else_owns(aws) -> None:
    _bucket_in_another_account("theirs")
    with pytest.raises(SpotrainError) as err:
        stack.init(aws, region=R, bucket="theirs")
    assert "'theirs' is taken" in err.value.message and "--bucket" in err.value.hint
    assert aws.client("cloudformation", region_name=R).list_stacks()["StackSummaries"] == []


def test_a_bucket_another_account_owns_as_aws_says_it(aws) -> None:
    """Real S3 answers HeadBucket on another account's bucket with 403 (moto says 200)."""
    inject(aws, "before-call.s3.HeadBucket", "403", "Forbidden", status=403)
    with pytest.raises(SpotrainError) as err:
        stack.init(aws, region=R, bucket="theirs")
    assert "belongs to another AWS account" in err.value.message


def test_bucket_taken_while_the_stack_creates(aws) -> None:
    inject(aws, "before-call.s3.HeadBucket", "404", "Not Found", status=404)
    _bucket_in_another_account("raced")
    with pytest.raises(SpotrainError) as err:
        stack.init(aws, region=R, bucket="raced")
    assert "'raced' is taken" in err.value.message


def test_a_region_without_the_dlami(aws) -> None:
    with pytest.raises(SpotrainError) as err:
        stack.init(aws, region="us-east-2")
    assert "us-east-2 has no PyTorch Deep Learning AMI" in err.value.message
    assert aws.client("cloudformation", region_name="us-east-2").list_stacks()["StackSummaries"] == []


def test_access_denied_names_the_action_and_the_policy(aws) -> None:
    message = (
        "User: arn:aws:iam::123456789012:user/bob is not authorized to perform: cloudformation:CreateStack "
        "on resource: arn:aws:cloudformation:us-east-1:123456789012:stack/spotrain/*"
    )
    inject(aws, "before-call.cloudformation.CreateStack", "AccessDenied", message, status=403)
    with pytest.raises(SpotrainError) as err:
        stack.init(aws, region=R)
    assert "may not call cloudformation:CreateStack" in err.value.message
    assert "infra/controller-policy.md" in err.value.hint


def test_controller_access_denied_points_at_the_policy_file(aws) -> None:
    from spotrain.cloud.aws import images

    message = (
        "You are not authorized to perform this operation. User: arn:aws:iam::123456789012:user/bob is "
        "not authorized to perform: ec2:DescribeImages because no identity-based policy allows it"
    )
    inject(aws, "before-call.ec2.DescribeImages", "UnauthorizedOperation", message)
    with pytest.raises(SpotrainError) as err:
        images.choose_image(aws, region=R, instance_type="g5.xlarge")
    assert "may not call ec2:DescribeImages" in err.value.message
    assert "infra/controller-policy.json" in err.value.hint


def test_print_policy_fills_in_the_bucket(capsys) -> None:
    main(["init", "--print-policy", "--bucket", "my-ckpt"])
    policy = json.loads(capsys.readouterr().out)
    resources = json.dumps(policy)
    assert "arn:aws:s3:::my-ckpt/runs/*" in resources and "spotrain-*/" not in resources
    assert json.loads(stack.print_policy()) == json.loads(
        (REPO / "infra" / "controller-policy.json").read_text()
    )


def test_cli_init_twice(aws, capsys, isolated_env: Path) -> None:
    main(["init", "--region", R])
    assert "created" in capsys.readouterr().out
    main(["init", "--region", R])
    out = capsys.readouterr().out
    assert "up to date" in out and f"infra-{R}.json" in out
    with pytest.raises(SystemExit) as code:
        main(["init", "--region", R, "--bucket", "Bad_Name"])
    assert code.value.code == 2 and "not valid" in capsys.readouterr().err
