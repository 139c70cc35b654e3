"""The state database on real SQLite files in the test's SPOTRAIN_HOME."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spotrain import store_schema
from spotrain.config import PlanRecord, RunSpec
from spotrain.cost import PriceCurve, PriceSample
from spotrain.errors import SpotrainError
from spotrain.store import TERMINAL, RunState, Store

REPO = Path(__file__).resolve().parent.parent
ZONE = {"region": "us-east-1", "zone": "us-east-1a", "instance_type": "p3.2xlarge"}


@pytest.fixture
def db(isolated_env: Path) -> Store:
    with Store.open(isolated_env) as s:
        yield s


def new_attempt(s: Store, run_id: str, t: float = 100.0, **kw: object) -> int:
    args = {**ZONE, "instance_id": "i-1", "spot_usd_per_hour": 0.9, "requested_at": t, **kw}
    return s.add_attempt(run_id, **args).number  # type: ignore[arg-type]


# ---- the file ----


def test_open_creates_a_private_directory_and_a_wal_database(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b"
    with Store.open(state) as s:
        assert s.path == state / "state.db"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "state.db").stat().st_mode) == 0o600
    conn = sqlite3.connect(state / "state.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store_schema.MIGRATIONS)


def test_two_stores_on_one_file_see_each_others_writes(isolated_env: Path) -> None:
    with Store.open(isolated_env) as a, Store.open(isolated_env) as b:
        a.create_run("r1", {"recipe": "digits"}, dry_run=True)
        assert b.get_run("r1").state is RunState.REQUESTING
        b.set_state("r1", RunState.PROVISIONING, reason="launched")
        assert a.get_run("r1").state is RunState.PROVISIONING
        threads = [
            threading.Thread(target=lambda s=s: [s.add_event("r1", "tick", {}) for _ in range(50)])
            for s in (a, b)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(a.events("r1", kinds=["tick"])) == 100


def test_another_process_writes_while_this_one_does(isolated_env: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from spotrain.store import Store\n"
        "with Store.open(Path(sys.argv[1])) as s:\n"
        "    for i in range(200): s.add_event('r1', 'child', {'i': i})\n"
    )
    with Store.open(isolated_env) as s:
        s.create_run("r1", {"recipe": "digits"}, dry_run=False)
        child = subprocess.Popen([sys.executable, "-c", code, str(isolated_env)], cwd=REPO)
        for i in range(200):
            s.add_event("r1", "parent", {"i": i})
        assert child.wait(timeout=60) == 0
        assert len(s.events("r1", kinds=["child"])) == 200 and len(s.events("r1", kinds=["parent"])) == 200


# ---- runs ----


def test_a_run_moves_through_its_states_and_each_move_is_an_event(db: Store) -> None:
    db.create_run("r1", {"recipe": "digits"}, dry_run=True)
    for state in (RunState.PROVISIONING, RunState.TRAINING, RunState.INTERRUPTED, RunState.REQUESTING):
        db.set_state("r1", state, reason="why", data={"attempt": 1})
    db.set_state("r1", RunState.REQUESTING)  # already there: no event
    db.set_state("r1", RunState.SUCCEEDED, reason="target reached")
    run = db.get_run("r1")
    assert run.state in TERMINAL and run.end_reason == "target reached" and run.dry_run
    moves = [(e.data["from"], e.data["to"]) for e in db.events("r1", kinds=["state"])]
    assert moves == [
        (None, "requesting"),
        ("requesting", "provisioning"),
        ("provisioning", "training"),
        ("training", "interrupted"),
        ("interrupted", "requesting"),
        ("requesting", "succeeded"),
    ]
    assert db.events("r1", kinds=["state"])[1].data == {
        "from": "requesting",
        "to": "provisioning",
        "reason": "why",
        "attempt": 1,
    }


def test_a_state_change_and_its_event_are_one_transaction(db: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    db.create_run("r1", {"recipe": "digits"}, dry_run=False)

    def broken(*a: object, **k: object) -> int:
        raise OSError("disk gone")

    monkeypatch.setattr("spotrain.store._insert_event", broken)
    with pytest.raises(OSError):
        db.set_state("r1", RunState.PROVISIONING)
    assert db.get_run("r1").state is RunState.REQUESTING


def test_runs_are_listed_newest_first_and_ids_are_unique(db: Store) -> None:
    ids = set()
    for _ in range(200):  # as launch uses it: a new id, then the run; a taken id is never handed out
        run_id = db.new_run_id("digits")
        db.create_run(run_id, {"recipe": "digits"}, dry_run=False)
        ids.add(run_id)
    assert len(ids) == 200 and all(re.fullmatch(r"digits-\d{8}-\d{4}-[0-9a-f]{4}", i) for i in ids)
    for i in ("a", "b", "c"):
        db.create_run(i, {"recipe": "digits"}, dry_run=False)
    assert [r.run_id for r in db.list_runs()][:3] == ["c", "b", "a"]
    with pytest.raises(SpotrainError, match="already exists"):
        db.create_run("a", {}, dry_run=False)


def test_an_unknown_run_is_named_with_the_newest_ids(db: Store) -> None:
    with pytest.raises(SpotrainError, match="no runs") as e:
        db.get_run("nope")
    assert "SPOTRAIN_HOME" in e.value.hint
    for i in range(8):
        db.create_run(f"digits-{i}", {}, dry_run=False)
    with pytest.raises(SpotrainError) as e:
        db.set_state("digits-x", RunState.FAILED)
    assert "run 'digits-x' is unknown" in e.value.message
    assert e.value.hint == "newest runs: digits-7, digits-6, digits-5, digits-4, digits-3"


def test_secret_env_values_never_reach_the_file(isolated_env: Path) -> None:
    env = {
        "AWS_SECRET_ACCESS_KEY": "s3cr3t-1",
        "HF_TOKEN": "s3cr3t-2",
        "db_password": "s3cr3t-3",
        "LR": "0.1",
    }
    with Store.open(isolated_env) as s:
        s.create_run("r1", {"recipe": "digits", "env": env}, dry_run=False)
        assert s.get_run("r1").spec.env == {
            "AWS_SECRET_ACCESS_KEY": "***",
            "HF_TOKEN": "***",
            "db_password": "***",
            "LR": "0.1",
        }
    raw = b"".join(p.read_bytes() for p in isolated_env.iterdir() if p.is_file())
    assert b"s3cr3t" not in raw and b"0.1" in raw


# ---- attempts ----


def test_attempts_are_numbered_and_only_one_is_live(db: Store) -> None:
    db.create_run("r1", {}, dry_run=False)
    assert db.live_attempt("r1") is None
    assert new_attempt(db, "r1") == 1
    with pytest.raises(RuntimeError, match="live attempt 1"):
        new_attempt(db, "r1")
    a = db.update_attempt("r1", 1, started_at=110.0, training_started_at=130.0, last_step=500)
    assert (a.started_at, a.training_started_at, a.ended_at, a.end_reason) == (110.0, 130.0, None, "")
    assert db.live_attempt("r1") == a
    db.update_attempt("r1", 1, ended_at=400.0, end_reason="spot-interruption", exit_code=75)
    assert new_attempt(db, "r1", zone="us-east-1b", t=450.0) == 2
    db.update_attempt("r1", 2, resumed_from_step=500)
    assert [(a.number, a.zone, a.end_reason) for a in db.attempts("r1")] == [
        (1, "us-east-1a", "spot-interruption"),
        (2, "us-east-1b", ""),
    ]
    assert db.live_attempt("r1").number == 2  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="colour"):
        db.update_attempt("r1", 2, colour="red")
    with pytest.raises(LookupError):
        db.update_attempt("r1", 9, last_step=1)
    with pytest.raises(SpotrainError, match="unknown"):
        new_attempt(db, "nope")


# ---- events ----


def test_trainer_events_fed_twice_are_stored_once(db: Store) -> None:
    db.create_run("r1", {}, dry_run=False)
    new_attempt(db, "r1")
    lines = [{"t": 1.0 + i, "kind": "step", "step": i, "loss": 2.0 / (i + 1)} for i in range(10)]
    assert db.add_trainer_events("r1", 1, lines[:6], offset=600) == 6
    assert db.add_trainer_events("r1", 1, lines[4:], offset=1000) == 4  # a reconnect re-reads two lines
    assert db.add_trainer_events("r1", 1, lines, offset=800) == 0  # and the S3 copy, all of them
    assert db.add_trainer_events("r1", 1, [{"kind": "step"}, {"t": 5}, {"t": True, "kind": "x"}]) == 0
    got = db.events("r1", kinds=["step"], attempt=1)
    assert [e.data["step"] for e in got] == list(range(10)) and {e.source for e in got} == {"trainer"}
    assert db.attempts("r1")[0].events_offset == 1000  # never moves back


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.integers(0, 20), st.sampled_from(["step", "eval"])), max_size=30),
    st.lists(st.integers(0, 30), max_size=8),
)
def test_trainer_events_in_any_chunks_and_repeats_are_the_set_of_events(
    picks: list[tuple[int, str]], cuts: list[int]
) -> None:
    feed = [{"t": float(t), "kind": k, "step": t} for t, k in picks]
    with tempfile.TemporaryDirectory() as d, Store.open(Path(d)) as s:
        s.create_run("r1", {}, dry_run=False)
        new_attempt(s, "r1")
        bounds = sorted({0, len(feed), *[min(c, len(feed)) for c in cuts]})
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            s.add_trainer_events("r1", 1, feed[lo:hi])
            s.add_trainer_events("r1", 1, feed[: hi // 2])  # and some of the past again
        got = [(e.t, e.kind) for e in s.events("r1", attempt=1)]
        assert sorted(got) == sorted({(float(t), k) for t, k in picks})  # each once, whatever the feed
        assert [t for t, _ in got] == sorted(t for t, _ in got)


def test_events_filter_by_kind_attempt_and_position(db: Store) -> None:
    db.create_run("r1", {}, dry_run=False)
    e1 = db.add_event("r1", "launch", {"zone": "us-east-1a"}, attempt=1, t=50.0)
    db.add_event("r1", "sync", {"files": 3}, attempt=1, t=40.0)
    db.add_event("r1", "launch", {"zone": "us-east-1b"}, attempt=2, t=60.0)
    assert e1.source == "controller" and e1.data == {"zone": "us-east-1a"}
    assert [e.kind for e in db.events("r1", attempt=1)] == ["sync", "launch"]  # time order
    assert [e.attempt for e in db.events("r1", kinds=["launch"])] == [1, 2]
    assert [e.data["zone"] for e in db.events("r1", kinds={"launch"}, after_id=e1.id)] == ["us-east-1b"]


# ---- spot prices ----


def test_price_samples_include_the_one_in_force_at_start(db: Store) -> None:
    samples = [PriceSample(z, "p3.2xlarge", t, p) for z, t, p in [
        ("us-east-1a", 0, 1.0), ("us-east-1a", 50, 1.1), ("us-east-1a", 120, 1.2), ("us-east-1a", 300, 1.3),
        ("us-east-1b", 100, 2.0), ("us-east-1b", 150, 2.1), ("us-east-1c", 10, 3.0),
    ]]  # fmt: skip
    assert db.add_price_samples("us-east-1", samples) == 7
    assert db.add_price_samples("us-east-1", samples[:3]) == 0  # duplicates ignored
    db.add_price_samples("us-west-2", [PriceSample("us-west-2a", "p3.2xlarge", 110, 9.0)])
    db.add_price_samples("us-east-1", [PriceSample("us-east-1a", "g5.xlarge", 110, 9.0)])
    got = db.price_samples(region="us-east-1", instance_type="p3.2xlarge", zones=None, start=100, end=200)
    assert [(s.zone, s.t) for s in got] == [
        ("us-east-1a", 50), ("us-east-1a", 120),  # 50: the price in force at 100
        ("us-east-1b", 100), ("us-east-1b", 150),  # a sample at start needs no earlier one
        ("us-east-1c", 10),  # nothing newer: still in force
    ]  # fmt: skip
    only_b = db.price_samples(
        region="us-east-1", instance_type="p3.2xlarge", zones=["us-east-1b"], start=0, end=120
    )
    assert [s.t for s in only_b] == [100]  # no sample before start: the history begins later


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.sampled_from(["us-east-1a", "us-east-1b"]), st.integers(0, 1000), st.integers(1, 50)),
        max_size=40,
    ),
    st.integers(0, 1000),
    st.integers(1, 500),
)
def test_the_stored_window_prices_an_attempt_like_the_whole_history(
    rows: list[tuple[str, int, int]], start: int, length: int
) -> None:
    samples = [PriceSample(z, "p3.2xlarge", float(t), p / 10) for z, t, p in rows]
    with tempfile.TemporaryDirectory() as d, Store.open(Path(d)) as s:
        s.add_price_samples("us-east-1", samples)
        stored = {(x.zone, x.t): x for x in samples}  # the first of each (zone, t) is the one kept
        for x in reversed(samples):
            stored[(x.zone, x.t)] = x
        window = s.price_samples(
            region="us-east-1", instance_type="p3.2xlarge", zones=None, start=start, end=start + length
        )
        for zone in ("us-east-1a", "us-east-1b"):
            full = PriceCurve(x for x in stored.values() if x.zone == zone)
            part = PriceCurve(x for x in window if x.zone == zone)
            try:
                expected = full.integral_usd(start, start + length)
            except LookupError:
                assert not [x for x in window if x.zone == zone and x.t <= start]
                continue
            assert part.integral_usd(start, start + length) == pytest.approx(expected)


# ---- schema versions ----


def test_an_empty_file_at_version_0_is_migrated(isolated_env: Path) -> None:
    (isolated_env / "state.db").touch()
    with Store.open(isolated_env) as s:
        s.create_run("r1", {}, dry_run=False)


def test_migrations_apply_in_order_and_keep_the_data(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store.open(isolated_env) as s:
        s.create_run("r1", {"recipe": "digits"}, dry_run=False)
    head = len(store_schema.MIGRATIONS)
    extra = [
        ["ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT ''"],
        ["UPDATE runs SET note = 'migrated ' || run_id"],
    ]
    monkeypatch.setattr(store_schema, "MIGRATIONS", store_schema.MIGRATIONS + extra)
    with Store.open(isolated_env) as s:
        assert s.get_run("r1").spec.recipe == "digits"
    conn = sqlite3.connect(isolated_env / "state.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == head + 2
    assert conn.execute("SELECT note FROM runs").fetchone()[0] == "migrated r1"


def test_a_state_db_of_schema_1_opens_with_its_runs_typed_and_their_plan(isolated_env: Path) -> None:
    # A user's state.db from before the plan was stored: schema 1, the checkpoint interval in the spec
    conn = sqlite3.connect(isolated_env / "state.db")
    conn.executescript(";".join(store_schema.MIGRATIONS[0]) + "; PRAGMA user_version = 1")
    old = '{"recipe":"cifar10","instance":"g4dn.12xlarge","regions":["us-west-2"],"checkpoint_seconds":212.1}'
    conn.execute("INSERT INTO runs VALUES ('r1', 1.0, 1.0, 'interrupted', ?, 0, '')", (old,))
    conn.execute("INSERT INTO runs VALUES ('r2', 2.0, 2.0, 'failed', '{\"recipe\":\"gone\"}', 0, 'x')")
    conn.commit()
    conn.close()
    with Store.open(isolated_env) as s:
        run = s.get_run("r1")
        assert (run.spec.recipe, run.spec.instance, run.spec.regions) == (
            "cifar10",
            "g4dn.12xlarge",
            ["us-west-2"],
        )
        assert run.plan == PlanRecord("g4dn.12xlarge", gpus=4, root_gb=150, checkpoint_s=212.1)
        gone = s.get_run("r2")  # a recipe this spotrain no longer knows: still shown, never launched
        assert gone.spec.recipe == "gone" and gone.plan is None
        s.create_run("r3", RunSpec(recipe="digits"), dry_run=True, plan=PlanRecord("c5.large", 0, 30, 60.0))
        assert s.get_run("r3").plan == PlanRecord("c5.large", 0, 30, 60.0)
    conn = sqlite3.connect(isolated_env / "state.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store_schema.MIGRATIONS)


def test_a_failing_migration_leaves_the_previous_version(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(isolated_env).close()
    head = len(store_schema.MIGRATIONS)
    broken = [["CREATE TABLE half (x)", "THIS IS NOT SQL"]]
    monkeypatch.setattr(store_schema, "MIGRATIONS", store_schema.MIGRATIONS + broken)
    with pytest.raises(sqlite3.OperationalError):
        Store.open(isolated_env)
    conn = sqlite3.connect(isolated_env / "state.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == head
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'half'").fetchall()


def test_a_database_from_a_newer_spotrain_is_refused_untouched(isolated_env: Path) -> None:
    Store.open(isolated_env).close()
    conn = sqlite3.connect(isolated_env / "state.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = (isolated_env / "state.db").read_bytes()
    with pytest.raises(SpotrainError, match="newer spotrain") as e:
        Store.open(isolated_env)
    assert "upgrade spotrain" in e.value.hint
    assert (isolated_env / "state.db").read_bytes() == before


# ---- bad files and directories ----


@pytest.mark.parametrize(
    "content", [os.urandom(8192), b"SQLite format 3\x00" + os.urandom(4096)], ids=["random", "bad-pages"]
)
def test_a_corrupt_database_is_refused_and_never_overwritten(isolated_env: Path, content: bytes) -> None:
    db_file = isolated_env / "state.db"
    db_file.write_bytes(content)
    with pytest.raises(SpotrainError) as e:
        Store.open(isolated_env)
    assert str(db_file) in e.value.message and "not changed" in e.value.message
    assert "move it aside" in e.value.hint
    assert db_file.read_bytes() == content


def test_a_foreign_sqlite_file_is_refused_untouched(isolated_env: Path) -> None:
    conn = sqlite3.connect(isolated_env / "state.db")
    conn.execute("CREATE TABLE photos (x)")
    conn.commit()
    conn.close()
    with pytest.raises(SpotrainError, match="not spotrain's"):
        Store.open(isolated_env)
    assert sqlite3.connect(isolated_env / "state.db").execute(
        "SELECT name FROM sqlite_master"
    ).fetchall() == [("photos",)]


OPEN_AS_USER = """
import sys
from pathlib import Path
from spotrain.errors import SpotrainError
from spotrain.store import Store
try:
    Store.open(Path(sys.argv[1]))
except SpotrainError as e:
    print(e)
    sys.exit(2)
"""


def open_without_write_permission(state_dir: Path) -> subprocess.CompletedProcess[str]:
    """Open the store in a process that may not write `state_dir` (as nobody when the tests run as root)."""
    cmd = [sys.executable, "-c", OPEN_AS_USER, str(state_dir)]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/", timeout=60)


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root without setpriv")
@pytest.mark.parametrize("exists", [True, False], ids=["existing-dir-with-runs", "missing-dir"])
def test_a_read_only_state_directory_is_named_with_a_fix(exists: bool) -> None:
    top = Path(tempfile.mkdtemp(prefix="spotrain-ro-"))
    try:
        state = top / "home" if exists else top / "home" / "deeper"
        (top / "home").mkdir()
        if exists:
            with Store.open(state) as s:
                s.create_run("r1", {}, dry_run=False)
            before = (state / "state.db").read_bytes()
        for p in (top, top / "home", *(top / "home").iterdir()):
            p.chmod(0o555 if p.is_dir() else 0o444)
        out = open_without_write_permission(state)
        assert out.returncode == 2, out.stderr
        assert str(state) in out.stdout and "SPOTRAIN_HOME" in out.stdout and "chmod" in out.stdout
        if exists:
            assert (state / "state.db").read_bytes() == before
    finally:
        for p in (top, *top.rglob("*")):
            if p.is_dir():
                p.chmod(0o700)
        shutil.rmtree(top)
