"""The controller imports where there is no fcntl (Windows): only the run lock needs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_controller_imports_without_fcntl() -> None:
    code = "import sys; sys.modules['fcntl'] = None; import spotrain.cli, spotrain.layout; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
