"""boto3 lives only under this package. Sessions, clients, and AWS errors turned into SpotrainError.

Clients retry only the errors botocore's standard mode names (throttling, 5xx, connection resets);
`fast_client` retries nothing, for create calls, so that zone failover moves on at once (SkyPilot's
split). Every public entry point runs inside `aws_errors()`, so a missing or expired credential, or a
missing permission, is one clear SpotrainError instead of a traceback.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)

from spotrain.errors import SpotrainError

DEFAULT_REGION = "us-east-1"
CREDENTIAL_CHAIN = (
    "environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN]), "
    "the profile AWS_PROFILE names in ~/.aws/credentials and ~/.aws/config (SSO and assume-role included), "
    "container credentials, then the EC2 instance role"
)
CREDENTIALS_HINT = (
    "run `aws configure` (keys), `aws sso login --profile NAME` (SSO), or export AWS_PROFILE; "
    "`aws sts get-caller-identity` shows what boto3 finds"
)
REJECTED_CODES = {
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AuthFailure",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
}
DENIED_CODES = {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"}
CONTROLLER_POLICY = "infra/controller-policy.json"
POLICY_HINT = (
    f"attach the policy in {CONTROLLER_POLICY} to your IAM user or role "
    "(`spotrain init --print-policy` prints it, with your bucket filled in)"
)
_DENIED_ACTION = re.compile(r"perform:? ([a-z0-9-]+:[A-Za-z0-9*]+)")

_STANDARD = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60)
_FAST = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=10, read_timeout=60)

P = ParamSpec("P")
R = TypeVar("R")


def session(*, profile: str | None = None, region: str | None = None) -> boto3.Session:
    """A boto3 session for `profile` (default: the credential chain) in `region`."""
    try:
        return boto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as err:
        raise SpotrainError(f"AWS profile '{profile}' is not in ~/.aws/config", CREDENTIALS_HINT) from err


def region_of(sess: boto3.Session, region: str | None) -> str:
    """`region` if given, else the session's, else us-east-1; an unknown name raises SpotrainError."""
    name = region or sess.region_name or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    known = sess.get_available_regions("ec2")
    if known and name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        raise SpotrainError(
            f"region '{name}' is not an AWS region"
            + (f"; did you mean {', '.join(close)}?" if close else ""),
            f"pick one of: {', '.join(sorted(known))}",
        )
    return name


def client(sess: boto3.Session, service: str, region: str, *, fast: bool = False) -> Any:
    """A client with standard retries, or (fast=True) none at all, for calls that fail over."""
    return sess.client(service, region_name=region, config=_FAST if fast else _STANDARD)


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def error_message(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Message", ""))


def denied_action(err: ClientError) -> str:
    """The IAM action AWS refused ('ec2:RunInstances'), from its message; else the API operation."""
    found = _DENIED_ACTION.search(error_message(err))
    return found.group(1) if found else f"the {err.operation_name} operation"


@contextmanager
def aws_errors(action: str, *, policy_hint: str = POLICY_HINT) -> Iterator[None]:
    """Turn credential, permission and connection failures while doing `action` into SpotrainError;
    a missing permission names the IAM action and `policy_hint` says where the policy is."""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as err:
        raise SpotrainError(
            f"no usable AWS credentials to {action}: {err}. boto3 looked in: {CREDENTIAL_CHAIN}",
            CREDENTIALS_HINT,
        ) from err
    except (CredentialRetrievalError, TokenRetrievalError, SSOError) as err:
        raise SpotrainError(
            f"AWS credentials could not be loaded to {action} ({err}); boto3 looked in: {CREDENTIAL_CHAIN}",
            CREDENTIALS_HINT,
        ) from err
    except NoRegionError as err:
        raise SpotrainError(f"no AWS region set to {action}", "pass --region or set AWS_REGION") from err
    except EndpointConnectionError as err:
        raise SpotrainError(
            f"cannot reach AWS to {action}: {err}", "check the network and the region name"
        ) from err
    except ClientError as err:
        code = error_code(err)
        if code in REJECTED_CODES:
            raise SpotrainError(
                f"AWS rejected the credentials while trying to {action} ({code}: {error_message(err)}); "
                f"boto3 took them from the chain: {CREDENTIAL_CHAIN}",
                "refresh them (`aws sso login`, new session token) or " + CREDENTIALS_HINT,
            ) from err
        if code in DENIED_CODES:
            raise SpotrainError(
                f"AWS denied permission to {action}: your identity may not call {denied_action(err)} "
                f"({code}: {error_message(err)[:300]})",
                policy_hint,
            ) from err
        raise


def translated(action: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator form of aws_errors, for the public entry points of cloud/aws/."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            with aws_errors(action):
                return fn(*args, **kwargs)

        return inner

    return wrap


__all__ = [
    "BotoCoreError",
    "ClientError",
    "aws_errors",
    "client",
    "denied_action",
    "error_code",
    "error_message",
    "region_of",
    "session",
    "translated",
]
