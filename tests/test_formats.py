"""The terminal's one duration format and one money format (spotrain.formats), at their edges."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from spotrain.cost import Bill, RunCost, RunUsage, S3Usage
from spotrain.formats import duration, usd, usd_per_hour
from spotrain.render import cost_table


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0:00:00"),
        (0.4, "0:00:00"),  # under a second: the nearest second is none
        (0.5, "0:00:01"),  # halves go up, not to the even second as round() would
        (59.4, "0:00:59"),
        (59.5, "0:01:00"),  # rounded, not truncated to 0:00:59
        (3599.5, "1:00:00"),
        (3 * 3600 + 25 * 60 + 7, "3:25:07"),
        (2 * 86400 + 3600 + 1, "49:00:01"),  # days stay hours
    ],
)
def test_duration_rounds_to_the_nearest_second(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (0, "$0.0000"),
        (0.00004, "$0.0000"),  # under half of the last place shown
        (0.00006, "$0.0001"),
        (0.0031, "$0.0031"),  # a dry-run minute: four places, where cents would say $0.00
        (12345.678, "$12,345.6780"),
        (-1.5, "-$1.5000"),  # the sign before the dollar (a negative saving)
        (-0.00004, "$0.0000"),  # never "-$0.0000"
    ],
)
def test_usd_has_four_places_and_grouped_thousands(amount: float, shown: str) -> None:
    assert usd(amount) == shown


def test_a_price_per_hour_is_money_per_hour() -> None:
    assert usd_per_hour(0.526) == "$0.5260/h"


def test_the_cost_table_uses_both_formats() -> None:
    usage = RunUsage("r", (), (), (), (), S3Usage(), 0.98, "top1", 0.0, 59.5, 59.5)
    console = Console(file=io.StringIO(), width=120)
    console.print(cost_table(Bill(usage, RunCost(attempts=[], s3_usd=12345.678, gpu_hours=0.0))))
    text = console.file.getvalue()
    assert "wall 0:01:00" in text and "S3 $12,345.6780" in text and "all in $12,345.6780" in text
