"""What `launch --dry-run` shows while it works: on an 80-column terminal (a pseudo-terminal, as a
user's) a spinner with the elapsed time through the boot and a training bar with top-1 and $ so far;
piped to a file, the same run as plain lines, with no escape sequence and no carriage return."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.e2e.cli import REPO, spotrain

pexpect = pytest.importorskip("pexpect")

# --boot-delay 3: the boot outlasts one second of the spinner's clock on any machine (it is a floor).
LAUNCH = ("launch", "--dry-run", "--recipe", "digits", "-y", "--boot-delay", "3", "--max-epochs", "1")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _tty_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "SPOTRAIN_HOME": str(home)}
    for name in ("COLUMNS", "LINES", "NO_COLOR", "SPOTRAIN_CRASH_AT"):
        env.pop(name, None)  # the width must come from the terminal itself
    env["TERM"] = "xterm-256color"
    return env


def test_an_80_column_terminal_shows_the_boot_clock_and_a_training_bar(tmp_path: Path) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "spotrain.cli", *LAUNCH],
        cwd=str(REPO),
        env=_tty_env(tmp_path),
        dimensions=(40, 80),
        timeout=180,
        encoding="utf-8",
    )
    seen = []
    try:
        # the spinner's line while the instance boots, its clock past 0:00:00 (redrawn in place)
        child.expect(r"attempt 1: booting[^\r\n]*?0:00:0[1-9]")
        seen += [child.before, child.after]
        # the training bar: after the first eval, its figures line carries top-1 and $ so far
        child.expect(r"eval at epoch 1\.00")
        seen += [child.before, child.after]
        child.expect(
            r"━[^\n]*\d+%  ETA [0-9:-]+\r\n  step \d+  loss [\d.]+  top-1 \d+\.\d%  [\d,]+ img/s  \$\d+\.\d{4} so far"
        )
        seen += [child.before, child.after]
        child.expect(pexpect.EOF)
        seen.append(child.before)
    finally:
        child.close()
    text = ANSI.sub("", "".join(seen))
    assert child.exitstatus == 0, text[-3000:]
    lines = [piece for line in text.split("\r\n") for piece in line.split("\r")]
    drawn = [line for line in lines if re.search("[│┌└━]", line)]  # tables and bars (sentences soft-wrap)
    assert drawn and max(len(line) for line in drawn) <= 80, max(drawn, key=len)  # the terminal's width
    assert "SUCCEEDED: the trainer finished" in text


def test_piped_output_is_plain_lines(tmp_path: Path) -> None:
    out = spotrain(*LAUNCH, home=tmp_path, env={"COLUMNS": ""})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "\x1b" not in out.stdout and "\r" not in out.stdout, repr(out.stdout[:2000])
    lines = out.stdout.splitlines()
    assert "attempt 1: requesting a spot g4dn.xlarge" in lines
    assert any(
        re.fullmatch(r"attempt 1: trainer synced: \d+ files, \d+ KiB in [\d.]+ s", line) for line in lines
    )
    # each eval gives one progress line: the bar's figures as text
    progress = r"attempt 1: epoch [\d.]+ of 1, step \d+, loss [\d.]+, top-1 \d+\.\d%, [\d,]+ img/s, \$\d+\.\d{4} so far, ETA \S+"
    assert any(re.fullmatch(progress, line) for line in lines), "\n".join(lines)
    # the image's reason is the plan's, once; the attempt names only the image
    assert any(
        re.fullmatch(r"PROVISIONING: i-\w+ in [\w-]+ at \$[\d.]+/h, image ami-\w+", line) for line in lines
    )
