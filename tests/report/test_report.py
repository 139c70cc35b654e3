"""spotrain report and compare on the dry-run demo (two attempts, one interruption), and on bad input:
a run with no events yet, no matplotlib, an --out that cannot be written."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from e2e import cli  # tests/e2e, a package beside this one
from PIL import Image

from spotrain.errors import SpotrainError
from spotrain.report import DPI, FIGURES, build_report
from spotrain.store import Store

REPO = Path(__file__).resolve().parents[2]


def spotrain(*args: str, home: Path, pythonpath: str = "", timeout: float = 240):
    path = os.pathsep.join(p for p in (pythonpath, str(REPO)) if p)
    return cli.spotrain(*args, home=home, env={"PYTHONPATH": path}, timeout=timeout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> SimpleNamespace:
    """One dry-run demo launch for the module: its stdout, `cost --json`, home and run id."""
    home = tmp_path_factory.mktemp("home")
    out = spotrain(
        *("launch", "--dry-run", "--recipe", "digits", "--inject-interruption", "step:30"),
        *("--auto-resume", "-y", "--boot-delay", "0.5"),
        home=home,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    bill = spotrain("cost", "--json", home=home)
    assert bill.returncode == 0, bill.stderr
    cost = json.loads(bill.stdout)
    assert len(cost["attempts"]) == 2, cost
    return SimpleNamespace(stdout=out.stdout, cost=cost, home=home, run=cost["run"], state=home / "dry-run")


@pytest.fixture(scope="module")
def report(demo, tmp_path_factory) -> SimpleNamespace:
    """`spotrain report RUN --out DIR` on the demo run: the CLI's output and the files it wrote."""
    out_dir = tmp_path_factory.mktemp("report")
    done = spotrain("report", demo.run, "--out", str(out_dir), home=demo.home)
    assert done.returncode == 0, done.stderr
    return SimpleNamespace(out=out_dir, stdout=done.stdout, stderr=done.stderr, html=out_dir / "report.html")


def test_the_demo_ends_by_writing_the_report_and_printing_its_path(demo) -> None:
    html = demo.state / "reports" / demo.run / "report.html"
    assert f"report: {html}" in demo.stdout
    assert html.is_file() and all((html.parent / f"{n}.png").is_file() for n in FIGURES)
    assert not (html.parent / "summary.png").exists()  # the summary is the page's table, not an image


def test_html_has_the_six_figures_and_the_summary_and_embeds_its_figures(report) -> None:
    assert report.stdout.strip() == f"report: {report.html}" and report.stderr == ""
    page = report.html.read_text()
    for i, (name, (title, _)) in enumerate(FIGURES.items(), start=1):
        assert f'<section id="{name}"><h2>{i}. {title}</h2>' in page
    assert f'<section id="summary"><h2>{len(FIGURES) + 1}. Summary</h2><table id="summary-table">' in page
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    files = [report.out / f"{n}.png" for n in FIGURES]
    assert [base64.b64decode(b) for b in embedded] == [f.read_bytes() for f in files]
    # Self-contained: nothing fetched when the page is opened.
    assert not re.search(r'(src|href)="(?!data:)', page) and "http" not in page and "missing:" not in page


def test_each_png_opens_at_its_expected_size(report) -> None:
    for name, (_, (w, h)) in FIGURES.items():
        with Image.open(report.out / f"{name}.png") as img:
            img.load()
            assert (img.format, img.size) == ("PNG", (round(w * DPI), round(h * DPI))), name


def test_summary_numbers_equal_cost_json(demo, tmp_path) -> None:
    with Store.open(demo.state) as store:
        done = build_report(store, demo.run, tmp_path)
        steps = store.events(demo.run, kinds=["step"])
        notice = store.events(demo.run, kinds=["interruption"])[0]
        resumed = store.events(demo.run, kinds=["start"], attempt=2)[0].data["step"]
    assert done.missing == []
    assert {k: done.summary[k] for k in demo.cost} == demo.cost
    done_before = max([e.data["step"] for e in steps if e.attempt == 1] + [notice.data["step"]])
    assert done.summary["lost_steps"] == done_before - resumed == 0  # checkpointed at the notice
    assert done.summary["img_per_s"] == statistics.median(e.data["img_per_s"] for e in steps)
    assert 0 < done.summary["utilisation"] < 1 and done.summary["peak_tflops"] == 65.0  # one T4
    page = done.html.read_text()
    c = demo.cost
    for text in (
        f"${c['total_usd']:.4f}",
        f"${c['on_demand_usd']:.4f}",
        f"${c['savings_usd']:.4f} ({c['savings_fraction']:.0%})",
        f"${c['to_target']['usd']:.4f}",
        f"{c['gpu_hours']:.3f}",
        "0 steps redone",
    ):
        assert text in page, text


def test_compare_puts_the_summaries_side_by_side(demo) -> None:
    out = spotrain("compare", demo.run, demo.run, "--json", home=demo.home)
    assert out.returncode == 0, out.stderr
    first, second = json.loads(out.stdout)
    assert first == second and {k: first[k] for k in demo.cost} == demo.cost
    out_dir = demo.home / "compare-out"
    table = spotrain("compare", demo.run, demo.run, "--out", str(out_dir), home=demo.home)
    assert table.returncode == 0 and f"${demo.cost['total_usd']:.4f}" in table.stdout, table.stderr
    assert f"compare: {out_dir / 'compare.html'}" in table.stdout
    assert sorted(p.name for p in out_dir.iterdir()) == ["compare.html"]  # one page, figures inside
    page = (out_dir / "compare.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4 and "missing:" not in page
    assert f"{demo.run} (1)" in page and f"{demo.run} (2)" in page
    unknown = spotrain("compare", demo.run, "digits-nope", home=demo.home)
    assert unknown.returncode == 2 and "digits-nope" in unknown.stderr


def _bare_run(state: Path, *, attempt: bool) -> tuple[Store, str]:
    store = Store.open(state)
    run_id = store.new_run_id("digits")
    store.create_run(run_id, {"recipe": "digits", "instance": "g4dn.xlarge"}, dry_run=True)
    if attempt:  # requested, but no price sample stored: it cannot be priced
        store.add_attempt(
            run_id,
            instance_id=None,
            region="us-east-1",
            zone="us-east-1a",
            instance_type="g4dn.xlarge",
            spot_usd_per_hour=None,
            requested_at=store.get_run(run_id).created_at,
        )
    return store, run_id


def test_a_run_with_no_events_says_what_is_missing_and_writes_the_rest(tmp_path) -> None:
    store, run_id = _bare_run(tmp_path / "state", attempt=False)
    with store:
        done = build_report(store, run_id, tmp_path / "out")
    assert done.pngs == {} and not (tmp_path / "out" / "accuracy.png").exists()
    sections = {m.split(":")[0] for m in done.missing}
    assert {"accuracy", "throughput", "spend", "schedule", "attempts", "prices", "summary"} <= sections
    page = done.html.read_text()
    assert all(f'<section id="{n}">' in page for n in (*FIGURES, "summary"))
    assert all(f"missing: {m.split(': ', 1)[1]}" in page for m in done.missing)
    assert done.summary["total_usd"] == 0 and done.summary["n_attempts"] == 0


def test_an_attempt_without_prices_still_gets_its_timeline(tmp_path) -> None:
    store, run_id = _bare_run(tmp_path / "state", attempt=True)
    with store:
        done = build_report(store, run_id, tmp_path / "out")
    assert sorted(done.pngs) == ["attempts"]
    assert "spend: the run cannot be priced yet" in done.missing
    assert any(m.startswith("summary: cost: no spot price for g4dn.xlarge") for m in done.missing)
    assert "prices: no spot price sample for g4dn.xlarge in us-east-1a" in done.missing
    assert "total_usd" not in done.summary and "cannot be priced yet" in done.html.read_text()


def test_without_matplotlib_the_library_names_the_pip_command(tmp_path, monkeypatch) -> None:
    store, run_id = _bare_run(tmp_path / "state", attempt=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    with store, pytest.raises(SpotrainError, match=r"pip install 'spotrain\[report\]'"):
        build_report(store, run_id, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # The demo's launch prints that message instead of failing a run that has ended.
    from rich.console import Console

    from spotrain.terminal import print_report

    console = Console(file=io.StringIO(), width=80)
    with Store.open(tmp_path / "state") as store:
        print_report(console, SimpleNamespace(store=store, state_dir=tmp_path), run_id)
    assert "report not written: the report needs matplotlib" in console.file.getvalue()


def test_without_matplotlib_the_cli_exits_2_with_the_pip_command(demo, tmp_path) -> None:
    fake = tmp_path / "site" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'matplotlib'\", name='matplotlib')\n"
    )
    out = spotrain(
        "report", demo.run, "--out", str(tmp_path / "r"), home=demo.home, pythonpath=str(fake.parent)
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "pip install 'spotrain[report]'" in out.stderr and "Traceback" not in out.stderr


def test_an_unwritable_out_exits_2_naming_the_path(demo, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")  # works as root too, where permissions would not stop us
    out = spotrain("report", demo.run, "--out", str(blocker / "report"), home=demo.home)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"cannot write the report to {blocker / 'report'}" in out.stderr and "Traceback" not in out.stderr
