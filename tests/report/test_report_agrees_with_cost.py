"""`spotrain report RUN` and `spotrain cost RUN` show the same figures for the same run, live and ended.

The run is written straight into a dry-run store (two attempts, an interruption, the target reached
in the second); the commands run in this process through click, with the bill's clock held at one
second so that a live attempt's figures are the same in both. The live attempt has no stored price
history yet: its quoted price is the one in force, for the cost and for every figure of the report.
"""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from spotrain.cli import cli
from spotrain.cost import PriceSample
from spotrain.formats import duration, usd
from spotrain.store import RunState, Store

T0 = 1_800_000_000.0  # the first request; every other time is an offset from it
NOW = T0 + 1234.25  # the clock while the second attempt is live
TYPE, REGION = "g4dn.xlarge", "us-east-1"


def _attempt(store: Store, run_id: str, zone: str, quote: float, at: float, **life: float | str) -> None:
    store.add_attempt(
        run_id,
        instance_id=f"i-{zone}",
        region=REGION,
        zone=zone,
        instance_type=TYPE,
        spot_usd_per_hour=quote,
        requested_at=T0 + at,
    )
    number = len(store.attempts(run_id))
    store.update_attempt(
        run_id, number, **{k: T0 + v if isinstance(v, float) else v for k, v in life.items()}
    )


def _trainer(store: Store, run_id: str, attempt: int, *events: tuple[float, str, dict]) -> None:
    store.add_trainer_events(run_id, attempt, [{"t": T0 + t, "kind": k, **data} for t, k, data in events])


def _live_run(state: Path) -> str:
    """Attempt 1 in us-east-1a (history stored, a price change mid-life), interrupted at step 30;
    attempt 2 in us-east-1b, live, no history stored, reaching top1 0.99 (the target is 0.98)."""
    with Store.open(state) as store:
        run_id = store.new_run_id("digits")
        store.create_run(run_id, {"recipe": "digits", "instance": TYPE}, dry_run=True)
        _attempt(store, run_id, f"{REGION}a", 0.2, 0.0, started_at=12.5, training_started_at=30.0)
        store.add_price_samples(
            REGION,
            [PriceSample(f"{REGION}a", TYPE, T0 - 600, 0.2), PriceSample(f"{REGION}a", TYPE, T0 + 200, 0.25)],
        )
        _trainer(
            store,
            run_id,
            1,
            (31.0, "start", {"step": 0, "config": {"epochs": 5}}),
            (100.0, "step", {"step": 22, "epoch": 1.0, "loss": 0.9, "img_per_s": 1000.0}),
            (101.0, "eval", {"epoch": 1.0, "top1": 0.76}),
            (300.0, "checkpoint", {"step": 30, "where": "s3", "bytes": 2_000_000}),
            (301.0, "interruption", {"step": 30, "source": "injected"}),
        )
        store.update_attempt(run_id, 1, ended_at=T0 + 333.0, end_reason="spot-interruption", last_step=30)
        _attempt(store, run_id, f"{REGION}b", 0.3, 400.0, started_at=420.0, training_started_at=440.0)
        _trainer(
            store,
            run_id,
            2,
            (441.0, "start", {"step": 30, "resumed_from": "s3://b/ckpt-30", "config": {"epochs": 5}}),
            (700.0, "step", {"step": 60, "epoch": 2.0, "loss": 0.3, "img_per_s": 1200.0}),
            (900.0, "eval", {"epoch": 3.0, "top1": 0.99}),
        )
        store.update_attempt(run_id, 2, resumed_from_step=30, last_step=60)
    return run_id


def _end(state: Path, run_id: str) -> None:
    """The second attempt ends; its zone's history is stored then, at another price than the quote."""
    with Store.open(state) as store:
        store.add_price_samples(REGION, [PriceSample(f"{REGION}b", TYPE, T0 + 300, 0.31)])
        store.update_attempt(run_id, 2, ended_at=T0 + 1500.75, end_reason="finished")
        store.set_state(run_id, RunState.SUCCEEDED, reason="target reached")


@pytest.fixture
def home(tmp_path, monkeypatch) -> SimpleNamespace:
    monkeypatch.setenv("SPOTRAIN_HOME", str(tmp_path))
    clock = SimpleNamespace(time=lambda: NOW)  # the bill's and the report's clock, no other
    monkeypatch.setattr("spotrain.cost.time", clock)
    monkeypatch.setattr("spotrain.report.data.time", clock)
    state = tmp_path / "dry-run"
    return SimpleNamespace(path=tmp_path, state=state, run=_live_run(state))


def _run(*args: str) -> str:
    done = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert done.exit_code == 0, done.output
    return done.output


def _table(page: str, opening: str) -> list[list[str]]:
    """The cells of the first table of `page` that starts with `opening`, a list a row."""
    body = page[page.index(opening) :].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body)
    return [[unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)] for row in rows]


def _figures_of_cost(bill: dict) -> dict[str, str]:
    """What the report's summary must say, from `cost --json`, in the terminal's formats."""
    tt, metric = bill["to_target"], f"{bill['target_metric']} {bill['target']}"
    return {
        "wall-clock": duration(bill["wall_s"]),
        f"time to {metric}": duration(tt["seconds"]),
        f"$ to {metric}": usd(tt["usd"]),
        "total $": usd(bill["total_usd"]),
        "  spot / EBS / S3": f"{usd(bill['spot_usd'])} / {usd(bill['ebs_usd'])} / {usd(bill['s3_usd'])}",
        "on-demand equivalent": usd(bill["on_demand_usd"]),
        "savings": f"{usd(bill['savings_usd'])} ({bill['savings_fraction']:.0%})",
        "GPU-hours": f"{bill['gpu_hours']:.3f}",
    }


def _assert_report_agrees_with_cost(home: SimpleNamespace) -> dict:
    bill = json.loads(_run("cost", home.run, "--json"))
    table = _run("cost", home.run)
    out = home.path / "report"
    assert _run("report", home.run, "--out", str(out)).strip() == f"report: {out / 'report.html'}"
    page = (out / "report.html").read_text()
    assert "missing:" not in page  # every figure drawn, the $ axis of the accuracy figure included

    summary = dict(_table(page, '<table id="summary-table">'))
    for label, figure in _figures_of_cost(bill).items():
        assert summary[label] == figure, label
        for part in figure.split(" (")[0].split(" / "):
            assert part in table, label  # the cost table shows the same figure
    head, *rows = _table(page, "<table><tr><th>#</th>")
    assert len(rows) == len(bill["attempts"])
    for row, attempt in zip(rows, bill["attempts"], strict=True):
        cells = dict(zip(head, row, strict=True))
        assert cells["billed s"] == str(attempt["billed_s"])
        assert (cells["spot $"], cells["EBS $"]) == (usd(attempt["spot_usd"]), usd(attempt["ebs_usd"]))
        assert duration(attempt["billed_s"]) in table and usd(attempt["on_demand_usd"]) in table
    (compared,) = json.loads(_run("compare", home.run, "--json"))
    assert {k: compared[k] for k in bill} == bill  # the report's summary is cost --json's dict
    return bill


def test_a_live_run_priced_at_its_quote_has_the_same_figures_in_report_and_cost(home) -> None:
    bill = _assert_report_agrees_with_cost(home)
    first, second = bill["attempts"]
    assert (first["end_reason"], second["end_reason"]) == ("spot-interruption", "")
    # The live attempt is billed to NOW at its quote, $0.30/h: the price history has no sample for it.
    assert second["billed_s"] == 815 and second["spot_usd"] == pytest.approx(0.3 * 815 / 3600, abs=1e-6)
    assert bill["to_target"]["seconds"] == 900 - 12.5


def test_an_ended_run_has_the_same_figures_in_report_and_cost(home) -> None:
    _end(home.state, home.run)
    bill = _assert_report_agrees_with_cost(home)
    second = bill["attempts"][1]
    assert second["end_reason"] == "finished" and second["billed_s"] == 1081
    assert second["spot_usd"] == pytest.approx(0.31 * 1081 / 3600, abs=1e-6)  # the stored history wins
