"""`spotrain prices` end to end: the console script talks to a moto server on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import botocore.handlers
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from spotrain.cli import main

from .aws_fakes import NOW, P3, Price, history, spot_prices


def run_cli(args: list[str], endpoint: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true", **env}
    full = {k: v for k, v in full.items() if v != ""}
    return subprocess.run(
        [sys.executable, "-m", "spotrain.cli", *args], env=full, capture_output=True, text=True, timeout=60
    )


def recent(rows: list[Price]) -> list[Price]:
    """The seeded history, moved so that its 'now' is the real now (the CLI asks for the last 24 h)."""
    shift = datetime.now(timezone.utc) - NOW - timedelta(minutes=1)
    return [Price(r.region, r.zone, r.instance_type, r.t + shift, r.usd) for r in rows]


def test_prices_prints_one_row_a_zone(moto_server: str) -> None:
    with spot_prices(recent(history())):
        out = run_cli(["prices", "--instance", P3], moto_server)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    rows = [line for line in lines if line.lstrip().startswith("│") and "us-east-1" in line]
    assert [r.split()[1] for r in rows] == ["us-east-1a", "us-east-1c", "us-east-1b"]
    assert "7.3400" in rows[0] and "-70%" in rows[0]  # 1 - 7.34/24.48 = 70%
    assert "24.480" in out.stdout  # the on-demand price in the caption, and where it comes from
    assert "spotrain's us-east-1 table" in " ".join(out.stdout.split())  # moto has no Pricing API


def test_prices_nodes_shows_n_times_each_zones_price(moto_server: str) -> None:
    """A multi-node run pays N instances an hour: `--nodes 4` puts 4 x the price beside each zone's."""
    import json

    with spot_prices(recent(history())):
        out = run_cli(["prices", "--instance", P3, "--nodes", "4"], moto_server, COLUMNS="120")
        as_json = run_cli(["prices", "--instance", P3, "--nodes", "4", "--json"], moto_server)
        bad = run_cli(["prices", "--instance", P3, "--nodes", "0"], moto_server)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if "us-east-1a" in line)
    assert "7.3400" in row and "29.3600" in row  # 4 x 7.34
    assert "4 x $/h" in out.stdout and "4 nodes $97.920/h" in " ".join(out.stdout.split())
    table = json.loads(as_json.stdout)
    assert table["nodes"] == 4 and table["zones"][0]["nodes_usd_per_hour"] == pytest.approx(29.36)
    assert bad.returncode == 2 and "--nodes" in bad.stderr and "Traceback" not in bad.stderr


def test_prices_bad_input_is_exit_2(moto_server: str) -> None:
    with spot_prices(recent(history())):
        unknown = run_cli(["prices", "--instance", "p3.16xlarg"], moto_server)
        elsewhere = run_cli(["prices", "--instance", P3, "--region", "eu-north-1"], moto_server)
    assert unknown.returncode == 2 and "p3.16xlarge" in unknown.stderr and "Traceback" not in unknown.stderr
    assert elsewhere.returncode == 2 and "eu-north-1" in elsewhere.stderr and "hint:" in elsewhere.stderr


def test_missing_credentials_name_the_chain(moto_server: str) -> None:
    out = run_cli(["prices", "--instance", P3], moto_server, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
    assert out.returncode == 2, out.stderr
    assert "no usable AWS credentials" in out.stderr and "AWS_PROFILE" in out.stderr
    assert "instance role" in out.stderr and "Traceback" not in out.stderr


def test_expired_credentials_are_one_message(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def expired(**_: Any) -> Any:
        error = {"Code": "ExpiredToken", "Message": "The security token included in the request is expired"}
        return AWSResponse("https://ec2.invalid/", 400, {}, None), {"Error": error}

    handlers = [*botocore.handlers.BUILTIN_HANDLERS, ("before-call.ec2.DescribeSpotPriceHistory", expired)]
    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", handlers)
    with mock_aws(), pytest.raises(SystemExit) as exit_:
        main(["prices", "--instance", P3])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "ExpiredToken" in err and "credential" in err and "hint:" in err
