"""A dry-run instance's boot: the user data the launch sent EC2 (infra/bootstrap.sh with the run's
exports), run by bash as cloud-init would run it, with the instance directory standing in for the
machine's filesystem: its `opt/spotrain` for /opt/spotrain (log, markers), its `data` for the data
directory, its `dev` for /dev (no snapshot device: the dry-run's data is what the recipe brings).

What differs from a real boot, and why: the machine is this one, with no GPU and no internet for pip,
so the GPU check and the pinned-torch venv are skipped (their `export` lines are dropped; both are
tested on their own in tests/infra/test_bootstrap*.py), and the Python is this process's. Everything
else runs as written, so a bootstrap that fails writes its failure marker and the attempt ends on it.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

# cloud-init runs the user data in its last stage (cloud_final_modules' scripts_user), after sshd has
# started (cloud-init docs, "Boot stages"): the controller's first probes find the instance reachable and
# not ready yet. A real bootstrap takes seconds (the GPU check alone); the dry-run's starts this late.
CLOUD_FINAL_S = 1.0
IMDS_USER_DATA = ".user-data"  # the instance's user data as EC2 keeps it, in its directory
# What this machine cannot do (see above); every other export of the user data stands.
DROPPED_EXPORTS = ("export SPOTRAIN_GPUS=", "export SPOTRAIN_TORCH_PIP=")


def boot_dir(home: Path) -> Path:
    return home / "opt" / "spotrain"


def keep_user_data(home: Path, user_data: str | None) -> None:
    """What EC2 keeps for the instance at launch (its IMDS user-data), so its boot runs it whichever
    process is there when it boots (the launching controller may die before)."""
    if user_data:
        (home / IMDS_USER_DATA).write_text(user_data, encoding="utf-8")


def kept_user_data(home: Path) -> str | None:
    path = home / IMDS_USER_DATA
    return path.read_text(encoding="utf-8") if path.exists() else None


def started(home: Path) -> bool:
    """cloud-init runs the user data once per instance: has it begun here?"""
    return (boot_dir(home) / "user-data").exists()


def start_user_data(
    home: Path, user_data: str | None, *, python: str = sys.executable, env: dict[str, str] | None = None
) -> subprocess.Popen | None:
    """Start the user data in `home` (the instance directory), as root's cloud-init starts it once the
    machine is up: in the background, so SSH answers while it runs and `wait_ready` polls it as on EC2.
    No user data (an instance launched by hand): nothing runs, as on EC2. `env`: what the machine's
    environment adds (a detached run's instance: its IMDS and moto's endpoint, for its supervisor)."""
    if not user_data:
        return None
    script = "".join(
        line for line in user_data.splitlines(keepends=True) if not line.startswith(DROPPED_EXPORTS)
    )
    env = {
        **(env or {}),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "SPOTRAIN_BOOT_DIR": str(boot_dir(home)),
        "SPOTRAIN_DATA_DIR": str(home / "data"),
        "SPOTRAIN_DEV_DIR": str(home / "dev"),
        "SPOTRAIN_PYTHON": python,
        "SPOTRAIN_GPUS": "0",
        "SPOTRAIN_LOGIN_USER": getpass.getuser(),
    }
    boot_dir(home).mkdir(parents=True, exist_ok=True)
    (home / "dev").mkdir(exist_ok=True)
    path = boot_dir(home) / "user-data"
    path.write_text(script, encoding="utf-8")
    # Its outcome is in the markers wait_ready reads, as on EC2 (cloud-init's exit code is not seen).
    with (boot_dir(home) / "user-data.log").open("wb") as log:
        return subprocess.Popen(
            ["bash", "-c", f'sleep {CLOUD_FINAL_S:g}; exec bash "$0"', str(path)],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
