"""What the report's figures draw, read back from the matplotlib Figures (data, not pixels), on a run
written straight into a store: attempt 1 requested 20 s before its instance started, evals and steps in
both attempts, an interruption; attempt 2 lives 30 s (billed 60: past the run's end).

Checked: a break (NaN) between attempts in every curve over time, each legend entry "attempt N" in
attempt N's colour, time axes from 0 to the run's end, the price axis over that span only, throughput
over time, cumulative spot $ against on demand ending at the bill's numbers, and the compare page.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from matplotlib.colors import to_hex

from spotrain.cost import PriceSample
from spotrain.report import build_compare, build_report, load_run, plots
from spotrain.report import series as S
from spotrain.report.data import load
from spotrain.store import RunState, Store

T0 = 1_800_000_000.0  # attempt 1's request; its instance starts 20 s later (the bill's zero)
TYPE, REGION = "g4dn.xlarge", "us-east-1"
EVALS = {1: [(60.0, 0.70), (110.0, 0.80)], 2: [(175.0, 0.90), (185.0, 0.99)]}  # s after T0 -> top1
STEPS = {1: [(50.0, 10, 900.0), (100.0, 20, 1000.0)], 2: [(172.0, 30, 1100.0), (182.0, 40, 1200.0)]}
END = T0 + 190.0  # attempt 2 ends; the run's span is 170 s from the first instance's start


def _write_run(state: Path, seed: int = 0) -> str:
    """The run described above; `seed` moves its price samples by a second (one history a store)."""
    with Store.open(state) as store:
        run_id = store.new_run_id("digits")
        store.create_run(run_id, {"recipe": "digits", "instance": TYPE}, dry_run=True)
        store.add_price_samples(
            REGION,
            [PriceSample(f"{REGION}{z}", TYPE, T0 - 600 + seed, 0.2) for z in "ab"]
            + [PriceSample(f"{REGION}a", TYPE, T0 + 80, 0.25)],
        )
        lives = {1: ("a", 0.0, 20.0, 140.0), 2: ("b", 150.0, 160.0, 190.0)}
        for n, (zone, requested, started, ended) in lives.items():
            store.add_attempt(
                run_id,
                instance_id=f"i-{n}",
                region=REGION,
                zone=REGION + zone,
                instance_type=TYPE,
                spot_usd_per_hour=0.2,
                requested_at=T0 + requested,
            )
            store.update_attempt(run_id, n, started_at=T0 + started, training_started_at=T0 + started + 5)
            events = [{"t": T0 + started + 6, "kind": "start", "step": 0 if n == 1 else 20}]
            events += [{"t": T0 + t, "kind": "eval", "epoch": 1.0, "top1": v} for t, v in EVALS[n]]
            events += [
                {"t": T0 + t, "kind": "step", "step": s, "loss": 1.0, "lr": 0.1, "img_per_s": r}
                for t, s, r in STEPS[n]
            ]
            if n == 1:
                events.append({"t": T0 + 120.0, "kind": "interruption", "step": 20, "source": "injected"})
            store.add_trainer_events(run_id, n, events)
            reason = "spot-interruption" if n == 1 else "finished"
            store.update_attempt(run_id, n, ended_at=T0 + ended, end_reason=reason, last_step=20 * n)
        store.set_state(run_id, RunState.SUCCEEDED, reason="target reached")
    return run_id


@pytest.fixture
def run(tmp_path):
    state = tmp_path / "state"
    run_id = _write_run(state)
    with Store.open(state) as store:
        yield load(store, run_id, now=END + 1000)


def _line(ax, label: str):
    return next(line for line in ax.get_lines() if line.get_label() == label)


def _nans(xs) -> list[int]:
    return [i for i, x in enumerate(xs) if isinstance(x, float) and math.isnan(x)]


def test_the_accuracy_curve_breaks_between_attempts_on_both_axes(run) -> None:
    fig = plots.figure("accuracy", run)
    for ax in fig.axes[:2]:
        xs, ys = _line(ax, "top1").get_data()
        assert _nans(xs) == [2] and _nans(ys) == [2]  # attempt 1's two evals, a break, attempt 2's
        assert [y for y in ys if not math.isnan(y)] == [v for n in (1, 2) for _, v in EVALS[n]]
    xs = _line(fig.axes[0], "top1").get_xdata()
    assert [x for x in xs if not math.isnan(x)] == [t - 20.0 for n in (1, 2) for t, _ in EVALS[n]]


def test_the_dollars_axis_keeps_the_last_eval_inside_it(run) -> None:
    """The last eval sits at the run's total: the axis runs a little past it, so its dot (and the
    target's star) is drawn whole, not cut in half by the frame."""
    ax = plots.figure("accuracy", run).axes[1]
    xs = [x for x in _line(ax, "top1").get_xdata() if not math.isnan(x)]
    left, right = ax.get_xlim()
    assert left == 0.0 and max(xs) < right <= 1.05 * max(xs)


@pytest.mark.parametrize("name", ["accuracy", "throughput", "spend", "attempts", "prices"])
def test_time_axes_run_from_0_to_the_runs_end(run, name) -> None:
    ax = plots.figure(name, run).axes[0]
    assert ax.get_xlim() == (0.0, 170.0)  # seconds: the first instance's start to attempt 2's end
    for line in ax.get_lines():
        xs = [x for x in line.get_xdata() if not math.isnan(x)]
        assert all(0.0 <= x <= 170.0 for x in xs), (line.get_label(), xs)
    for patch in ax.patches:  # the attempts' bars: attempt 1's request 20 s before is drawn from 0
        assert patch.get_x() >= 0.0 and patch.get_x() + patch.get_width() <= 170.0


def test_the_price_axis_covers_the_run_not_the_billed_minimum(run) -> None:
    ax = plots.figure("prices", run).axes[0]
    billed = _line(ax, "attempt 2 billed (us-east-1b)").get_xdata()
    assert (billed[0], billed[-1]) == (
        140.0,
        170.0,
    )  # billed 60 s from 140 (160 s after T0); the run ends at 170
    assert run.attempt_costs()[1].billed_s == 60


def _colour(handle) -> str:
    if hasattr(handle, "get_color"):
        return to_hex(handle.get_color())
    return to_hex(handle.get_facecolor(), keep_alpha=False)


@pytest.mark.parametrize("name", ["accuracy", "throughput", "spend", "schedule", "attempts", "prices"])
def test_every_legend_entry_of_an_attempt_is_in_that_attempts_colour(run, name) -> None:
    fig = plots.figure(name, run)
    entries = [
        (text.get_text(), handle)
        for ax in fig.axes
        if ax.get_legend() is not None
        for text, handle in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles, strict=True)
    ]
    mine = [(label, h) for label, h in entries if re.match(r"attempt \d", label)]
    assert {label.split()[1] for label, _ in mine} == {"1", "2"}, [label for label, _ in entries]
    for label, handle in mine:
        assert _colour(handle) == S.attempt_color(int(label.split()[1])), label


def test_throughput_is_drawn_over_time_one_line_an_attempt(run) -> None:
    ax = plots.figure("throughput", run).axes[0]
    for n in (1, 2):
        xs, ys = _line(ax, f"attempt {n}").get_data()
        assert list(xs) == [t - 20.0 for t, _, _ in STEPS[n]] and list(ys) == [r for _, _, r in STEPS[n]]


def test_cumulative_spot_dollars_against_on_demand_end_at_the_bill(run) -> None:
    ax = plots.figure("spend", run).axes[0]
    spot = _line(ax, "spot (spot + EBS $, as billed)").get_ydata()
    od = _line(ax, "on demand (the same seconds)").get_ydata()
    c = run.bill.cost
    assert spot[-1] == pytest.approx(c.total_usd - c.s3_usd)
    assert od[-1] == pytest.approx(c.on_demand_usd - c.s3_usd)
    assert all(b >= a for a, b in zip(spot, spot[1:], strict=False))  # cumulative never falls
    assert all(o > s for o, s in zip(od, spot, strict=True))  # spot at 0.2-0.25 $/h, on demand 0.526
    assert spot[0] > 0 and od[0] > 0  # at second 0 attempt 1's first minute (the minimum) is charged


def test_the_report_writes_no_summary_image(run, tmp_path) -> None:
    state = tmp_path / "state"
    with Store.open(state) as store:
        done = build_report(store, run.run.run_id, tmp_path / "out", now=END + 1000)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted(f"{n}.png" for n in done.pngs)
    assert "summary" not in done.pngs and done.missing == []


def test_compare_writes_one_page_with_the_runs_overlaid(tmp_path) -> None:
    state = tmp_path / "state"
    ids = [_write_run(state, seed) for seed in (0, 1)]
    with Store.open(state) as store:
        runs = [load_run(store, r, now=END + 1000) for r in ids]
    done = build_compare(runs, tmp_path / "cmp")
    assert [p.name for p in (tmp_path / "cmp").iterdir()] == ["compare.html"]
    assert done.figures == ["accuracy", "accuracy_usd", "spend", "throughput"] and done.missing == []
    page = done.html.read_text()
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 4
    assert all(r in page for r in ids) and '<table id="compare-table">' in page
    from spotrain.report.compare import overlays

    lines = overlays(runs, ids)
    assert [s.label for s, _ in lines["accuracy"]] == [f"{r} top1" for r in ids]
    assert [s.color for s, _ in lines["accuracy"]] == [S.attempt_color(1), S.attempt_color(2)]
    assert all(_nans(s.xs) == [2] for s, _ in lines["accuracy"])  # each run broken between its attempts
    spends = {s.label: s.ys[-1] for s, _ in lines["spend"]}
    for r, d in zip(ids, runs, strict=True):
        assert spends[f"{r} spot"] == pytest.approx(d.bill.cost.total_usd - d.bill.cost.s3_usd)
        assert spends[f"{r} on demand"] == pytest.approx(d.bill.cost.on_demand_usd - d.bill.cost.s3_usd)


def test_a_short_attempts_billed_minimum_after_it_ended_is_dotted_over_the_next_attempt() -> None:
    from types import SimpleNamespace

    from spotrain.cost import PriceCurve

    d = SimpleNamespace(origin=0.0, end=100.0)  # the run's span: 100 s
    curve = PriceCurve([PriceSample("us-east-1a", TYPE, -10.0, 0.2)])
    a = SimpleNamespace(number=1, zone="us-east-1a", started_at=0.0, requested_at=0.0, ended_at=10.0)
    ax = plots.new_figure((4, 3)).subplots()
    plots._billed(ax, lambda t: t, curve, d, a, 60.0)  # lived 10 s, billed the 60 s minimum
    ran, tail = ax.get_lines()
    assert (ran.get_xdata()[0], ran.get_xdata()[-1], ran.get_linestyle()) == (0.0, 10.0, "-")
    assert (tail.get_xdata()[0], tail.get_xdata()[-1], tail.get_linestyle()) == (10.0, 60.0, ":")
    assert to_hex(ran.get_color()) == to_hex(tail.get_color()) == to_hex(S.attempt_color(1))


def test_the_compare_pages_time_axes_run_from_0_to_the_longest_runs_end(tmp_path) -> None:
    from spotrain.report.compare import _axis, draw, overlays

    state = tmp_path / "state"
    ids = [_write_run(state, seed) for seed in (0, 1)]
    with Store.open(state) as store:
        runs = [load_run(store, r, now=END + 1000) for r in ids]
    lines, clock = overlays(runs, ids), _axis(runs)
    for name in ("accuracy", "spend", "throughput"):  # throughput's last step is at 162 s: still to 170
        assert draw(name, lines[name], clock).axes[0].get_xlim() == (0.0, 170.0), name
    spent = max(x for s, _ in lines["accuracy_usd"] for x in s.xs if x == x)
    left, right = draw("accuracy_usd", lines["accuracy_usd"], clock).axes[0].get_xlim()
    assert left == 0.0 and right > spent  # dollars: the last eval's dot whole inside the margin
