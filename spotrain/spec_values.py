"""The rules of single spec values that config.py's fields share, and of the user's own command
(`run`, `setup`, `workdir`): durations, S3 bucket names, a value as a message shows it.

A run of the user's own command has no recipe: it is stored under the reserved recipe name
`command` (catalog.COMMAND), which a spec never names itself.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from spotrain import catalog

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h)?$")
COMMAND_MAX_BYTES = 64 << 10  # it travels on the supervisor's command line (a Linux argument: 128 KiB)

EXPECTED_COMMAND = {
    "run": "your own command: a shell command line (in a spec file) or the words after `--` on launch",
    "setup": "a shell command run once per instance before `run`, e.g. pip install -r requirements.txt",
    "workdir": "the directory synced to the instance for `run` (default: where launch is run)",
}


def command_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The spec's values with the recipe a command run takes (catalog.COMMAND); `run` and `recipe`
    together, or `setup`/`workdir` without `run`, are refused (ValueError: the message starts with the
    field, as config.spec_error expects of a rule over several fields)."""
    run, recipe = values.get("run"), values.get("recipe")
    if run in (None, ""):
        for name in ("setup", "workdir"):
            if values.get(name) not in (None, ""):
                raise ValueError(f"{name}: given without run; {name} goes with your own command (run)")
        if recipe == catalog.COMMAND.name:
            raise ValueError(f"recipe: {recipe} is not a recipe; for your own command give run")
        return values
    if recipe not in (None, "", catalog.COMMAND.name):
        raise ValueError(
            f"recipe: {recipe} and run are both given; a run trains either a bundled recipe or your own "
            "command: drop --recipe (or recipe:) to run the command, or the command to run the recipe"
        )
    return {**values, "recipe": catalog.COMMAND.name}


def check_command(v: str | None, field: str) -> str | None:
    """A `run` or `setup` command line: text, not blank, no NUL, at most COMMAND_MAX_BYTES."""
    if v is None:
        return v
    if not v.strip() or "\x00" in v or len(v.encode()) > COMMAND_MAX_BYTES:
        raise ValueError(
            f"{EXPECTED_COMMAND[field]}; not blank, no NUL character, at most {COMMAND_MAX_BYTES >> 10} KiB"
        )
    return v


def check_workdir(v: Path | None) -> Path | None:
    """Made absolute (it is stored with the run); that it exists is plan.check_includes's to say, at
    launch: a stored run whose directory has gone must still read back."""
    return None if v is None else Path(v).expanduser().absolute()


def show(value: Any, limit: int = 120) -> str:
    """A value as a message shows it: whole when short, else its start (a 50 MB map is not printed)."""
    if isinstance(value, str):
        text = value if value and not any(c.isspace() for c in value) else repr(value)
    else:
        text = repr(value) if not isinstance(value, Path) else str(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def did_you_mean(word: Any, choices: Any) -> str:
    close = difflib.get_close_matches(str(word).strip().lower(), list(choices), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def seconds(v: Any) -> float | None:
    """Seconds from 300, 300.0, '300', '300s', '5m' or '2h'; None if unreadable."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    m = _DURATION.match(str(v).strip().lower())
    return float(m.group(1)) * {"m": 60.0, "min": 60.0, "h": 3600.0}.get(m.group(2), 1.0) if m else None


def bucket_ok(name: str) -> bool:
    """S3's bucket naming rules (general purpose buckets)."""
    if not 3 <= len(name) <= 63 or not re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", name):
        return False
    if ".." in name or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return False
    bad_prefix = ("xn--", "sthree-", "amzn-s3-demo-")
    bad_suffix = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
    return not name.startswith(bad_prefix) and not name.endswith(bad_suffix)


def split_injection(at: str) -> tuple[str, int]:
    """An injected interruption `AT[@R]` (config's form, already checked) as (AT, the node R it is
    posted on: 0 when not named). `step:30@1` is (step:30, 1)."""
    when, _, node = at.partition("@")
    return when, int(node) if node else 0


def check_injections(ats: list[str], *, nodes: int, command: bool) -> None:
    """The run's injected interruptions as a whole (ValueError naming the value, the message starting
    with the field as config's rules over several fields do): each @R names one of the run's `nodes`;
    a share (P%) needs a schedule spotrain knows, which the user's own `command` does not have."""
    for at in ats:
        when, node = split_injection(at)
        if node >= nodes:
            which = "node 0" if nodes == 1 else f"nodes 0 to {nodes - 1}"
            raise ValueError(
                f"inject_interruptions: {at} names node {node}, but the run has {nodes} "
                f"node{'s' if nodes > 1 else ''} ({which}); give @R with R below {nodes}, or no @R for node 0"
            )
        if command and when.endswith("%"):
            raise ValueError(
                "inject_interruptions: a share (P%) needs a schedule spotrain knows, and your own "
                "command's is its own; give step:N (a step its metric lines report) or seconds (20s)"
            )
