"""Where a spec's values come from, read safely: the file (`-f run.yaml`: bounded in size, UTF-8, YAML
without aliases or deep nesting, a mapping of field: value) and `SPOTRAIN_<FIELD>` variables.
config.load_spec layers them under the flags and validates the result."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from spotrain.errors import SpotrainError

# A spec is a page of settings. These bounds refuse, before anything is launched, what would exhaust
# this machine: a 1 GB file, an alias bomb, nesting deep enough to overflow the stack.
SPEC_FILE_MAX_BYTES = 1 << 20
YAML_MAX_DEPTH = 32


def read_spec_file(file: Path) -> dict[str, Any]:
    """The file's fields (`-` in a key read as `_`), its relative `includes` and `workdir` made relative to it."""
    doc = _parse_yaml(file, _read_text(file))
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise SpotrainError(
            f"{file} holds a {type(doc).__name__}, not a mapping of field: value",
            "a spec looks like 'recipe: digits' on one line, 'budget: 20' on the next",
        )
    out = {str(k).replace("-", "_"): v for k, v in doc.items()}
    includes = out.get("includes")
    if isinstance(includes, str):
        includes = [p.strip() for p in includes.split(",") if p.strip()]
    if isinstance(includes, list):
        out["includes"] = [
            str((Path(file).parent / p).resolve()) if isinstance(p, str) else p for p in includes
        ]
    if isinstance(out.get("workdir"), str):  # the user's command's directory, like includes
        out["workdir"] = str((Path(file).parent / out["workdir"]).resolve())
    return out


def _read_text(file: Path) -> str:
    """The file's text: at most SPEC_FILE_MAX_BYTES, UTF-8. Read in one bounded call, so that a FIFO
    or /dev/zero given to -f is refused as too large rather than read forever."""
    hint = "a spec is a short YAML text file of field: value lines, e.g. 'recipe: digits'"
    try:
        with open(file, "rb") as f:
            raw = f.read(SPEC_FILE_MAX_BYTES + 1)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise SpotrainError(
            f"cannot read the spec file {file}: {e.strerror}", "check the path given to -f"
        ) from None
    if len(raw) > SPEC_FILE_MAX_BYTES:
        raise SpotrainError(
            f"the spec file {file} is over 1 MB ({max(size, len(raw))} bytes); a spec holds at most"
            f" {SPEC_FILE_MAX_BYTES} bytes",
            "send large files with includes, or put them in S3 and pass their location in env",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpotrainError(
            f"the spec file {file} is not UTF-8 text (byte {e.start} is {raw[e.start : e.start + 1]!r})",
            hint + "; check that -f names the YAML file, not a binary one",
        ) from None


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, minus aliases and deep nesting. An alias makes a node shared, so a few
    lines (`&a [*b, *b, ...]` nested ten deep) stand for 10^10 values, which pydantic and every
    message would then walk; and the composer recurses once per level of nesting. A spec needs
    neither, so both are refused where they are met, before anything is built."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            raise _Refused(
                mark,
                "YAML aliases (*name) are not allowed in a spec",
                "write the value out where it is used (no &anchor and *alias), as plain field: value lines",
            )
        if self._depth >= YAML_MAX_DEPTH:
            raise _Refused(
                mark,
                f"values nested more than {YAML_MAX_DEPTH} deep are not allowed",
                "a spec's values are numbers, text, lists of text and one env map",
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Refused(Exception):
    def __init__(self, mark: Any, problem: str, hint: str) -> None:
        super().__init__(problem)
        self.mark, self.problem, self.hint = mark, problem, hint


def _parse_yaml(file: Path, text: str) -> Any:
    loader = _SpecLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as e:
        where = f"line {e.mark.line + 1}, column {e.mark.column + 1}"
        raise SpotrainError(f"{file}: {where}: {e.problem}", e.hint) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SpotrainError(
            f"{file} is not valid YAML{where}: {problem}",
            "a spec is a YAML mapping of field: value, e.g. 'recipe: digits'",
        ) from None
    finally:
        loader.dispose()


def from_env(env: Mapping[str, str], fields: Iterable[str], prefix: str) -> dict[str, Any]:
    """`PREFIX<FIELD>` for each of `fields`; lists comma-separated, `env` as KEY=VALUE,..."""
    return {name: env[f"{prefix}{name.upper()}"] for name in fields if f"{prefix}{name.upper()}" in env}


def check_keys(values: Mapping[str, Any], where: str, known: list[str]) -> None:
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            raise SpotrainError(
                f"unknown key '{key}' {where}" + (f"; did you mean '{close[0]}'?" if close else ""),
                f"known keys: {', '.join(known)}",
            )
