"""Secret-looking env values: kept out of state.db, in a 0600 file beside it, and handed to the trainer."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from spotrain import secret_env
from spotrain.errors import SpotrainError
from spotrain.store import RunState, Store

ENV = {
    "DB_PASS": "v4lue-pass",
    "HF_AUTH": "v4lue-auth",
    "WANDB_API_KEY": "v4lue-key",
    "gh_token": "v4lue-token",
    "MY_CREDENTIALS": "v4lue-cred",
    "AWS_SECRET_ACCESS_KEY": "v4lue-secret",
    "LR": "0.1",
    "WANDB_PROJECT": "digits",
}
SECRETS = {k: v for k, v in ENV.items() if v.startswith("v4lue")}


@pytest.mark.parametrize("name", list(SECRETS) + ["db_password", "SSH_PASSPHRASE", "OAUTH_ID"])
def test_secret_looking_names(name: str) -> None:
    assert secret_env.is_secret(name)


@pytest.mark.parametrize("name", ["LR", "WANDB_PROJECT", "BATCH", "HF_HOME"])
def test_plain_names(name: str) -> None:
    assert not secret_env.is_secret(name)


def state_bytes(state_dir: Path) -> bytes:
    """Every byte of the database (and its WAL) as it lies on disk."""
    return b"".join(p.read_bytes() for p in state_dir.glob("state.db*"))


def test_secret_values_go_to_a_0600_file_beside_the_database_not_into_it(isolated_env: Path) -> None:
    with Store.open(isolated_env) as store:
        store.create_run("r1", {"recipe": "digits", "env": ENV}, dry_run=True)
        run = store.get_run("r1")
        assert run.spec.env == {k: "***" if k in SECRETS else v for k, v in ENV.items()}
        raw = state_bytes(isolated_env)
        assert b"v4lue" not in raw and b"WANDB_PROJECT" in raw
        assert store.run_env(run) == ENV  # what the trainer gets, on this attempt and every other one
    path = isolated_env / "secrets" / "r1.json"
    assert json.loads(path.read_text()) == SECRETS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with Store.open(isolated_env) as fresh:  # a `spotrain resume` from a new process
        assert fresh.run_env(fresh.get_run("r1")) == ENV


@pytest.mark.parametrize("end", [RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED])
def test_the_secret_file_goes_when_the_run_ends(isolated_env: Path, end: RunState) -> None:
    with Store.open(isolated_env) as store:
        store.create_run("r1", {"recipe": "digits", "env": ENV}, dry_run=True)
        store.set_state("r1", RunState.INTERRUPTED, reason="spot")
        assert (isolated_env / "secrets" / "r1.json").exists()
        store.set_state("r1", end, reason="done")
    assert not (isolated_env / "secrets" / "r1.json").exists()


def test_a_run_without_secrets_writes_no_file(isolated_env: Path) -> None:
    with Store.open(isolated_env) as store:
        store.create_run("r1", {"recipe": "digits", "env": {"LR": "0.1"}}, dry_run=True)
        assert store.run_env(store.get_run("r1")) == {"LR": "0.1"}
    assert not (isolated_env / "secrets" / "r1.json").exists()


def test_a_lost_secret_file_is_named_not_replaced_by_the_marker(isolated_env: Path) -> None:
    with Store.open(isolated_env) as store:
        store.create_run("r1", {"recipe": "digits", "env": ENV}, dry_run=True)
        (isolated_env / "secrets" / "r1.json").unlink()
        with pytest.raises(SpotrainError) as e:
            store.run_env(store.get_run("r1"))
    assert "DB_PASS" in e.value.message and str(isolated_env / "secrets" / "r1.json") in e.value.message
    assert "spotrain down r1" in e.value.hint
