"""EC2 placement groups for moto, which has none (moto 5.2: "The create_placement_group action has not
been implemented"): create, describe (by name, `tag:KEY`, `tag-key`) and delete, kept on moto's own EC2
backend of the account and region (so moto's reset clears them with everything else), so a multi-node
launch and the sweep run the same boto3 calls here as on AWS. RunInstances already accepts
`Placement.GroupName` in moto (and ignores it: the dry-run's nodes are local processes anyway).
`install()` is called when the dry-run's moto patches are imported, and by the tests' moto fixtures.
"""

from __future__ import annotations

import hashlib
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.responses import EC2Response


def _groups(resp: EC2Response) -> dict[str, dict[str, Any]]:
    """Group name -> the group as DescribePlacementGroups returns it, on the region's EC2 backend."""
    return resp.ec2_backend.__dict__.setdefault("spotrain_placement_groups", {})


def _create(self: EC2Response) -> ActionResult:
    name = self._get_param("GroupName")
    groups = _groups(self)
    if name in groups:
        raise EC2ClientError(
            "InvalidPlacementGroup.Duplicate", f"The Placement Group '{name}' already exists."
        )
    tags = self._parse_tag_specification("placement-group").get("placement-group", {})
    groups[name] = {
        "GroupName": name,
        "GroupId": "pg-" + hashlib.sha256(f"{self.region}/{name}".encode()).hexdigest()[:17],
        "Strategy": self._get_param("Strategy") or "cluster",
        "State": "available",
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    return ActionResult({"PlacementGroup": groups[name]})


def _matches(group: dict[str, Any], flt: dict[str, Any]) -> bool:
    name, values = flt["Name"], flt["Values"]
    tags = {t["Key"]: t["Value"] for t in group["Tags"]}
    if name == "group-name":
        return group["GroupName"] in values
    if name == "tag-key":
        return any(v in tags for v in values)
    if name.startswith("tag:"):
        return tags.get(name[4:]) in values
    raise EC2ClientError("InvalidParameterValue", f"filter {name} is not played by the dry-run")


def _describe(self: EC2Response) -> ActionResult:
    filters = [{"Name": k, "Values": v} for k, v in self._filters_from_querystring().items()]
    names = self._get_param("GroupNames", [])
    found = [
        g
        for g in _groups(self).values()
        if (not names or g["GroupName"] in names) and all(_matches(g, f) for f in filters)
    ]
    return ActionResult({"PlacementGroups": found})


def _delete(self: EC2Response) -> ActionResult:
    name = self._get_param("GroupName")
    if _groups(self).pop(name, None) is None:
        raise EC2ClientError("InvalidPlacementGroup.Unknown", f"The Placement Group '{name}' is unknown.")
    return ActionResult({})


def install() -> None:
    """moto answers CreatePlacementGroup, DescribePlacementGroups and DeletePlacementGroup from now on
    (idempotent)."""
    for name, fn in (
        ("create_placement_group", _create),
        ("describe_placement_groups", _describe),
        ("delete_placement_group", _delete),
    ):
        setattr(EC2Response, name, fn)
