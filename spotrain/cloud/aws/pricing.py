"""On-demand prices per region from the AWS Price List Query API, the catalog's dated table as fallback.

`pricing:GetProducts` is answered only by a few endpoints ("Using the AWS Price List Query API", AWS
Billing user guide: us-east-1, eu-central-1, ap-south-1), for every region: the region goes in the
`regionCode` filter. A Linux on-demand price is the product with operatingSystem Linux, tenancy Shared,
no pre-installed software, capacitystatus Used (not a reservation's) and no license; its OnDemand term
has one hourly price dimension. Any failure (no permission, no network, no such product) falls back to
the catalog's us-east-1 table, and the result says which source it used and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

from spotrain import catalog
from spotrain.cloud.aws import BotoCoreError, ClientError, client, error_code

ENDPOINT_REGION = "us-east-1"
API = "pricing-api"
TABLE = "table"
_cache: dict[tuple[str, str], OnDemandPrice] = {}


@dataclass(frozen=True)
class OnDemandPrice:
    instance_type: str
    region: str
    usd_per_hour: float
    source: str  # API ("pricing-api") or TABLE ("table")
    as_of: str  # the price's effective date (API) or the table's date
    note: str  # one line for the plan: where the price comes from, and why the table if it is

    @property
    def label(self) -> str:
        """'2026-11-01, AWS Pricing API' or '2025-06-01, spotrain's us-east-1 table (...)'."""
        return f"{self.as_of}, {self.note}"


def filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """The GetProducts filters that leave one product: Linux, shared tenancy, on-demand capacity."""
    fields = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in fields.items()]


def parse(price_list: list[str]) -> tuple[float, str] | None:
    """The hourly USD price and its effective date from GetProducts' PriceList (JSON strings)."""
    for item in price_list:
        product = json.loads(item)
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dim in term.get("priceDimensions", {}).values():
                usd = dim.get("pricePerUnit", {}).get("USD")
                if dim.get("unit") == "Hrs" and usd and float(usd) > 0:
                    return float(usd), str(term.get("effectiveDate", ""))[:10]
    return None


def _table(itype: catalog.InstanceType, region: str, why: str) -> OnDemandPrice:
    where = "" if region == "us-east-1" else f", applied to {region}"
    return OnDemandPrice(
        itype.name,
        region,
        itype.on_demand_usd_per_hour,
        TABLE,
        catalog.PRICES_AS_OF,
        f"spotrain's us-east-1 table{where} ({why})",
    )


def _ask(pricing: Any, itype: catalog.InstanceType, region: str) -> OnDemandPrice:
    try:
        answer = pricing.get_products(
            ServiceCode="AmazonEC2",
            Filters=filters(itype.name, region),
            FormatVersion="aws_v1",
            MaxResults=10,
        )
    except ClientError as err:
        code = error_code(err)
        why = "no pricing:GetProducts permission" if code.startswith("AccessDenied") else code
        return _table(itype, region, f"the Pricing API answered {why}")
    except BotoCoreError as err:  # no network, no credentials
        return _table(itype, region, f"the Pricing API could not be reached: {type(err).__name__}")
    try:
        found = parse(answer.get("PriceList", []))
    except (ValueError, AttributeError):
        found = None
    if found is None:
        return _table(itype, region, f"the Pricing API lists no Linux on-demand price for it in {region}")
    usd, as_of = found
    return OnDemandPrice(itype.name, region, usd, API, as_of or "now", f"AWS Pricing API ({region})")


def on_demand(
    sess: boto3.Session, *, region: str, instance_type: str, pricing: Any | None = None
) -> OnDemandPrice:
    """`instance_type`'s Linux on-demand $/h in `region`: the Pricing API's, else the catalog's table.
    Never raises for the API's sake; an answer from the API is kept for the life of the process."""
    itype = catalog.instance_type(instance_type)
    key = (itype.name, region)
    if key not in _cache or pricing is not None:
        got = _ask(pricing or client(sess, "pricing", ENDPOINT_REGION, fast=True), itype, region)
        if got.source != API:
            return got  # asked again next time: a missing permission may be granted meanwhile
        _cache[key] = got
    return _cache[key]
