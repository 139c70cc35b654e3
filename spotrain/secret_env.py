"""Secret-looking `env` values of a run: never in state.db, its events or logs; kept instead in
`STATE/secrets/RUN.json` (mode 0600, in a 0700 directory) beside the database, read back each time the
trainer starts, and removed when the run ends.

Named `secret_env`, not `secrets`, so that it can never shadow the standard library's module.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from spotrain.errors import SpotrainError

REDACTED = "***"  # what the stored spec shows in place of a secret value
# Broad on purpose: a variable wrongly taken for a secret still reaches the trainer, only its value is
# not shown; a secret taken for a plain setting would sit in the database in clear.
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASS|AUTH|CREDENTIAL", re.IGNORECASE)


def is_secret(name: str) -> bool:
    """Whether `name` looks like it holds a secret (KEY, TOKEN, SECRET, PASS, AUTH, CREDENTIAL in it)."""
    return bool(_SECRET_NAME.search(name))


def redact(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with every secret-looking value replaced by REDACTED."""
    return {k: REDACTED if is_secret(str(k)) else v for k, v in env.items()}


def path(state_dir: Path, run_id: str) -> Path:
    return Path(state_dir) / "secrets" / f"{run_id}.json"


def save(state_dir: Path, run_id: str, env: Mapping[str, str]) -> None:
    """Write the secret-looking values of `env`, readable by this user only; nothing if there are none.
    Written to a temporary name and renamed, so a reader never sees half a file."""
    values = {k: v for k, v in env.items() if is_secret(str(k))}
    if not values:
        return
    target = path(state_dir, run_id)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target.parent.chmod(0o700)  # mkdir's mode is cut by the umask, and the directory may be older
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(values, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def run_env(state_dir: Path, run_id: str, spec_env: Mapping[str, str]) -> dict[str, str]:
    """The trainer's `env`: the stored spec's, each redacted value replaced by the one kept in the file."""
    redacted = [k for k, v in spec_env.items() if v == REDACTED and is_secret(k)]
    if not redacted:
        return dict(spec_env)
    target = path(state_dir, run_id)
    try:
        kept = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        kept = {}
    missing = [k for k in redacted if not isinstance(kept.get(k), str)]
    if missing:
        raise SpotrainError(
            f"run {run_id}: the value of {', '.join(missing)} is not in {target}, the only place it was"
            " kept, so the trainer cannot be given it",
            f"stop the run with `spotrain down {run_id}` and launch it again with the value",
        )
    return {k: kept[k] if k in redacted else v for k, v in spec_env.items()}


def remove(state_dir: Path, run_id: str) -> None:
    """Forget the run's secrets (its end, or `spotrain down`)."""
    path(state_dir, run_id).unlink(missing_ok=True)
