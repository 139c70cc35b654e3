"""The user's workdir as the bundle holds it: what its .spotrainignore (else its .gitignore) names is
left out, only for the workdir's destination; trainer/ and includes are sent whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from spotrain.remote.ignore import ignore_rules
from spotrain.remote.sync import DEFAULT_EXCLUDES, build_bundle


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("SPOTRAIN_HOME", str(tmp_path / "home"))  # the sync's stat cache
    root = tmp_path / "proj"
    for rel in ("train.py", "data/big.bin", "runs/a/x.pt", "keep.pt", "sub/model.pt", "sub/data/y"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel, encoding="utf-8")
    return root


def _sent(root: Path, filtered: set[str]) -> set[str]:
    entries = build_bundle([(root, "workdir")], list(DEFAULT_EXCLUDES), filtered).entries
    return {p.removeprefix("workdir/") for p, e in entries.items() if e[0] == "f"}


def test_gitignore_patterns_leave_files_and_whole_directories_out(project: Path) -> None:
    (project / ".gitignore").write_text("data/\n/runs\n*.pt\n!keep.pt\n", encoding="utf-8")
    sent = _sent(project, {"workdir"})
    # data/ matches at any depth, /runs only at the root, *.pt anywhere but the re-included keep.pt
    assert sent == {".gitignore", "train.py", "keep.pt"}


def test_a_spotrainignore_replaces_the_gitignore(project: Path) -> None:
    (project / ".gitignore").write_text("*.py\n", encoding="utf-8")
    (project / ".spotrainignore").write_text("data/\nruns/\n", encoding="utf-8")
    path, _ = ignore_rules(project)
    assert path == project / ".spotrainignore"
    assert _sent(project, {"workdir"}) == {
        ".gitignore",
        ".spotrainignore",
        "train.py",
        "keep.pt",
        "sub/model.pt",
    }


def test_no_ignore_file_or_an_unfiltered_destination_sends_everything(project: Path) -> None:
    everything = {"train.py", "data/big.bin", "runs/a/x.pt", "keep.pt", "sub/model.pt", "sub/data/y"}
    assert _sent(project, {"workdir"}) == everything
    (project / ".gitignore").write_text("*\n", encoding="utf-8")
    assert _sent(project, set()) == everything | {".gitignore"}  # includes and trainer/ are not filtered
