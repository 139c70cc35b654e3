"""The shape of the code, checked: imports flow one way (the import-linter contracts in pyproject.toml),
no two modules import each other, every module is on the map (ARCHITECTURE.md), and every file and
function is readable in one sitting."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("spotrain", "trainer")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 80


def sources() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def test_imports_keep_the_contracts() -> None:
    # The contracts (layers, the two halves, cloud | remote) live in pyproject.toml; `make lint` runs them too.
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout and "kept" in out.stdout, out.stdout


def _executes(graph: grimp.ImportGraph, importer: str) -> set[str]:
    """What importing `importer` runs directly: the modules it imports and their packages' __init__
    (importing a.b.c runs a/__init__ and a/b/__init__ first), less its own packages."""
    own = {importer.rsplit(".", n)[0] for n in range(1, importer.count(".") + 1)}
    done = set()
    for name in graph.find_modules_directly_imported_by(importer):
        parts = name.split(".")
        done |= {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
    return done - own - {importer}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_two_modules_import_each_other(package: str) -> None:
    graph = grimp.build_graph(package)
    runs = {m: _executes(graph, m) for m in graph.modules}
    mutual = sorted({tuple(sorted((a, b))) for a, done in runs.items() for b in done if a in runs.get(b, ())})
    assert mutual == [], f"modules that import each other (directly or through a package __init__): {mutual}"


def test_every_module_is_on_the_map() -> None:
    """ARCHITECTURE.md names each module by its path inside its package (`cloud/aws/prices.py`), and each
    package by its folder (`cloud/aws/`), in backquotes."""
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    missing = []
    for path in sources():
        inner = path.relative_to(REPO / path.relative_to(REPO).parts[0])
        if path.name == "__init__.py":
            name = f"{inner.parent.as_posix()}/" if inner.parent != Path(".") else None
        else:
            name = inner.as_posix()
        if name and f"`{name}`" not in text and f"`{path.relative_to(REPO).as_posix()}`" not in text:
            missing.append(path.relative_to(REPO).as_posix())
    assert missing == [], f"ARCHITECTURE.md does not name {missing}: add each with what it owns"


def test_files_and_functions_are_readable_in_one_sitting() -> None:
    long_files, long_functions = [], []
    for path in sources():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_FILE_LINES:
            long_files.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(
                        f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)"
                    )
    assert long_files == [], f"over {MAX_FILE_LINES} lines: {long_files}"
    assert long_functions == [], f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"
