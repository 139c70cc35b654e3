"""On-demand prices from the Pricing API (moto 5 does not emulate it: botocore's Stubber answers, after
the real client has validated the request), with the dated table as the fallback, saying which."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber

from spotrain import catalog
from spotrain.cloud.aws import prices, pricing

from .aws_fakes import NOW, P3, history, spot_prices


def product(usd: str, effective: str = "2026-11-01T00:00:00Z") -> str:
    """One GetProducts PriceList entry, shaped as AWS returns it (a JSON string)."""
    dim = {"unit": "Hrs", "pricePerUnit": {"USD": usd}, "description": "$ per On Demand Linux p3.16xlarge"}
    term = {"effectiveDate": effective, "priceDimensions": {"SKU.JRTCKXETXF.6YS6EN2CT7": dim}}
    return json.dumps(
        {
            "product": {"attributes": {"instanceType": P3, "operatingSystem": "Linux"}},
            "terms": {"OnDemand": {"SKU.JRTCKXETXF": term}},
        }
    )


@pytest.fixture
def api(aws: boto3.Session) -> Iterator[tuple[object, Stubber]]:
    pricing._cache.clear()
    client = aws.client("pricing", region_name="us-east-1")
    with Stubber(client) as stub:
        yield client, stub
    pricing._cache.clear()


def expect(stub: Stubber, region: str, response: dict | None = None, error: str | None = None) -> None:
    params = {
        "ServiceCode": "AmazonEC2",
        "Filters": pricing.filters(P3, region),
        "FormatVersion": "aws_v1",
        "MaxResults": 10,
    }
    if error:
        stub.add_client_error("get_products", service_error_code=error, http_status_code=400,
                              expected_params=params)  # fmt: skip
    else:
        stub.add_response("get_products", response or {}, params)


def test_the_regions_own_price_from_the_api(aws, api) -> None:
    client, stub = api
    expect(stub, "eu-west-1", {"PriceList": [product("26.4320000000")], "FormatVersion": "aws_v1"})
    got = pricing.on_demand(aws, region="eu-west-1", instance_type=P3, pricing=client)
    assert (got.usd_per_hour, got.source, got.as_of) == (26.432, "pricing-api", "2026-11-01")
    assert got.label == "2026-11-01, AWS Pricing API (eu-west-1)"
    assert {f["Field"]: f["Value"] for f in pricing.filters(P3, "eu-west-1")}["regionCode"] == "eu-west-1"
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("error", "response", "why"),
    [
        ("AccessDeniedException", None, "no pricing:GetProducts permission"),
        ("ThrottlingException", None, "answered ThrottlingException"),
        (None, {"PriceList": []}, "lists no Linux on-demand price for it in eu-west-1"),
    ],
)
def test_the_dated_table_when_the_api_cannot_say(aws, api, error, response, why) -> None:
    client, stub = api
    expect(stub, "eu-west-1", response, error)
    got = pricing.on_demand(aws, region="eu-west-1", instance_type=P3, pricing=client)
    assert got.usd_per_hour == catalog.instance_type(P3).on_demand_usd_per_hour and got.source == "table"
    assert got.as_of == catalog.PRICES_AS_OF and why in got.note and "applied to eu-west-1" in got.note


def test_the_prices_table_says_which_source_it_used(aws, monkeypatch) -> None:
    pricing._cache.clear()
    with spot_prices(history("us-east-1")):  # moto answers the Pricing API 404: the table, said so
        table = prices.quote(instance_type=P3, region="us-east-1", sess=aws, now=NOW)
    assert table.on_demand_source == "table" and table.on_demand_as_of.startswith(catalog.PRICES_AS_OF)
    assert "spotrain's us-east-1 table" in table.on_demand_as_of
    api_price = pricing.OnDemandPrice(P3, "us-east-1", 24.0, "pricing-api", "2026-11-01", "AWS Pricing API")
    monkeypatch.setattr(pricing, "on_demand", lambda *a, **k: api_price)
    with spot_prices(history("us-east-1")):
        table = prices.quote(instance_type=P3, region="us-east-1", sess=aws, now=NOW)
    assert (table.on_demand_usd_per_hour, table.on_demand_source) == (24.0, "pricing-api")
    assert table.zones[0].on_demand_usd_per_hour == 24.0  # discounts are against the region's own price
