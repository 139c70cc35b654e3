"""Which files of the user's directory (`workdir`, `spotrain launch -- CMD`) are not sent: the patterns
of its `.spotrainignore`, or where it has none its `.gitignore` (as SkyPilot reads `.skyignore` before
`.gitignore`), in git's own syntax (pathspec's GitIgnoreSpec, which follows gitignore(5): `build/`,
`*.pt`, `!keep.pt`, `/top-only`, `**/cache`).

Only the file at the directory's root is read: a `.gitignore` in a subdirectory is not, so a project
that relies on nested ones lists their patterns in a `.spotrainignore`. Why pathspec, not `git
ls-files`: the directory need not be a git repository, and one rule holds for both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pathspec import GitIgnoreSpec

IGNORE_FILES = (".spotrainignore", ".gitignore")  # the first one found at the root decides


def ignore_rules(root: Path) -> tuple[Path | None, Callable[[str, bool], bool]]:
    """(the ignore file read, or None; `ignored(rel, is_dir)` for a path relative to `root`)."""
    found = next((Path(root) / n for n in IGNORE_FILES if (Path(root) / n).is_file()), None)
    if found is None:
        return None, lambda rel, is_dir: False
    spec = GitIgnoreSpec.from_lines(found.read_text(encoding="utf-8", errors="replace").splitlines())
    return found, lambda rel, is_dir: spec.match_file(rel + "/" if is_dir else rel)
