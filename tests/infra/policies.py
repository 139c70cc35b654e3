"""infra/'s policies as the policy check reads them: the controller's (controller-policy.json), the
instance role's (from spotrain.yaml, with the bucket filled in), and the actions controller-policy.md
justifies granting although a flow does not use them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CONTROLLER_POLICY = REPO / "infra" / "controller-policy.json"
TEMPLATE = REPO / "infra" / "spotrain.yaml"
NOTES = REPO / "infra" / "controller-policy.md"


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Fn::GetAtt" if suffix == "GetAtt" else "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 (safe loader)


def _resolve(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, values) for n in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return values[node["Ref"]]
    if set(node) == {"Fn::GetAtt"}:
        return values[".".join(node["Fn::GetAtt"])]
    if set(node) == {"Fn::Sub"}:
        return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], node["Fn::Sub"])
    return {k: _resolve(v, values) for k, v in node.items()}


def instance_role_policy(bucket: str) -> dict[str, Any]:
    """The instance role's S3 policy from infra/spotrain.yaml, with the bucket filled in."""
    role = load_template()["Resources"]["InstanceRole"]["Properties"]
    values = {"BucketName": bucket, "Bucket": bucket, "Bucket.Arn": f"arn:aws:s3:::{bucket}"}
    (policy,) = role["Policies"]
    return _resolve(policy["PolicyDocument"], values)


def controller_policy() -> dict[str, Any]:
    return json.loads(CONTROLLER_POLICY.read_text(encoding="utf-8"))


def justified(*sections: str) -> set[str]:
    """The actions listed (`- \\`svc:Action\\`: why`) under the sections of controller-policy.md whose
    titles start with one of `sections`."""
    found: set[str] = set()
    for part in NOTES.read_text(encoding="utf-8").split("\n## ")[1:]:
        title, _, body = part.partition("\n")
        if title.startswith(sections):
            found |= set(re.findall(r"^- `([a-z0-9-]+:[A-Za-z]+)`", body, re.M))
    return found
