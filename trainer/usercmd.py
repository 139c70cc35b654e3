"""The supervisor of a user's own command (`spotrain launch -- CMD`, the spec's `run:`), in place of the
bundled trainer: the same run directory, events, S3 mirror, notices and exit codes, for any script.

    python -m trainer.usercmd --run-dir DIR --workdir W [--mirror s3://B/runs/RUN] [--setup CMD]
        [--checkpoint-every S] -- CMD

The command's contract (README, "Your own training script"), all of it optional but the exit code:
- `SPOTRAIN_CHECKPOINT_DIR`: write checkpoints there; `SPOTRAIN_RESUME_DIR`: load from there. They are
  the same directory: it holds the newest snapshot restored from S3 at start, so a script that saves
  and loads in one place needs nothing else, and nothing is copied between two.
- On a spot notice the whole process group gets SIGTERM; `SPOTRAIN_NOTICE_FILE` then holds the
  deadline (`{"deadline": unix s, "notice_time": ISO}`). Save, then exit 75: "saved, resume me".
- JSON lines on stdout such as `{"step": 10, "loss": 0.3}` or `{"step": 90, "top1": 0.9}` become `step`
  and `eval` events (trainer/usercmd_state.py); all output stays in train.log.
The checkpoint directory is mirrored to S3 when the command exits 75 (and 0), and every
`--checkpoint-every` seconds while it changes. The supervisor exits with the command's code.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from trainer import EXIT_INTERRUPTED, TrainerError
from trainer.events import EventLog
from trainer.interrupt import margin_s, notice_deadline
from trainer.mirror import Mirror, restore
from trainer.spot import SpotWatcher
from trainer.usercmd_state import fingerprint, metric_events, newest_local, snapshot, unpack

EXIT_SETUP_FAILED = 1  # a failed setup is a failure like any other: not retried


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.usercmd", description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--workdir", type=Path, required=True, help="where the command runs (the synced dir)")
    p.add_argument("--mirror", default=None, help="s3://BUCKET/runs/RUN_ID: checkpoints and logs")
    p.add_argument("--setup", default=None, help="run once per instance before the command")
    p.add_argument("--checkpoint-every", type=float, default=300.0, help="s between mirror checks")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command (run by bash -c)")
    args = p.parse_args(argv)
    args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not args.command:
        p.error("no command after --")
    return args


class Supervisor:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = args.run_dir.absolute()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_root = self.run_dir / "ckpt"
        self.user_ckpt = self.run_dir / "checkpoint"
        self.notice_file = self.run_dir / "notice.json"
        self.events = EventLog(self.run_dir / "events.jsonl")
        self.mirror = Mirror(args.mirror, self.run_dir, self.events) if args.mirror else None
        self.watcher = SpotWatcher()
        self.last_step = 0
        self.snapshot_step = 0
        self.child: subprocess.Popen | None = None
        self.deadline: float | None = None  # unix s: the notice's, once one came
        self.lock = threading.Lock()

    def restore(self) -> int:
        """The newest snapshot (S3's, else this instance's) unpacked as the checkpoint directory; its step."""
        self.user_ckpt.mkdir(parents=True, exist_ok=True)
        found = restore(self.args.mirror, self.ckpt_root, self.events) if self.args.mirror else None
        found = found or newest_local(self.ckpt_root, self.events)
        if found is None:
            return 0
        unpack(found, self.user_ckpt)
        step = int(json.loads((found / "manifest.json").read_text(encoding="utf-8"))["step"])
        self.last_step = self.snapshot_step = step
        return step

    def setup_once(self) -> int:
        """`--setup` once per instance: a marker in the run directory holds the digest of the setup that
        passed; a new setup (or none yet) runs. Its output goes to train.log."""
        setup = self.args.setup
        if not setup:
            return 0
        marker, digest = self.run_dir / "setup.done", hashlib.sha256(setup.encode()).hexdigest()
        if marker.is_file() and marker.read_text(encoding="utf-8").strip() == digest:
            return 0
        code = subprocess.call(["bash", "-c", setup], cwd=self.args.workdir, env=self.child_env())
        if code == 0:
            marker.write_text(digest + "\n", encoding="utf-8")
        return code

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # `python` in the command is the instance's training python (the DLAMI's torch), the one running us
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHONUNBUFFERED"] = "1"  # metric lines arrive as they are printed, not at exit
        for name in ("SPOTRAIN_CHECKPOINT_DIR", "SPOTRAIN_RESUME_DIR"):
            env[name] = str(self.user_ckpt)
        env["SPOTRAIN_NOTICE_FILE"] = str(self.notice_file)
        return env

    def read_output(self, stream) -> None:
        """Each line of the command's stdout to train.log, its metric lines to events (and their step to
        the watcher, so an injected notice at step:N lands at the command's own step N)."""
        for raw in iter(stream.readline, b""):
            sys.stdout.buffer.write(raw)
            sys.stdout.flush()
            for kind, fields in metric_events(raw.decode("utf-8", errors="replace")):
                self.events.write(kind, **fields)
                if isinstance(fields.get("step"), int):
                    self.last_step = max(self.last_step, fields["step"])
                    self.watcher.check_step(self.last_step)
                    self.forward_notice()

    def save(self) -> None:
        """The checkpoint directory as a new snapshot, queued for S3, when it changed since the last."""
        step = max(self.last_step, self.snapshot_step + 1)
        made = snapshot(self.user_ckpt, self.ckpt_root, step, self.events)
        if made is not None:
            self.snapshot_step = step
            if self.mirror is not None:
                self.mirror.checkpoint(made)

    def run(self) -> int:
        resumed = self.restore()
        self.events.write(
            "start",
            step=resumed,
            resumed_from=f"step {resumed}" if resumed else None,
            device="your command",
            world_size=1,
            config={
                "command": self.args.command,
                "workdir": str(self.args.workdir),
                "setup": self.args.setup,
            },
        )
        code = self.setup_once()
        if code != 0:
            self.events.write("error", message=f"setup exited {code}: see train.log")
            return EXIT_SETUP_FAILED
        self.watcher.arm(total_steps=0)
        self.watcher.start()
        cmd = (
            ["bash", "-c", " ".join(self.args.command)] if len(self.args.command) == 1 else self.args.command
        )
        restored = fingerprint(self.user_ckpt)  # before the command can write: its first save is a change
        child = self.child = subprocess.Popen(
            cmd, cwd=self.args.workdir, env=self.child_env(), stdout=subprocess.PIPE, start_new_session=True
        )
        reader = threading.Thread(target=self.read_output, args=(child.stdout,), daemon=True)
        reader.start()
        code = self.supervise(child, restored)
        reader.join(timeout=5.0)
        self.watcher.stop()
        return self.finish(
            code if code >= 0 else 128 - code
        )  # killed by signal N: 128 + N, as a shell says  # killed by N: 128 + N, as a shell says

    def forward_notice(self) -> None:
        """A notice (once): its deadline into the notice file, then SIGTERM to the command's process group.
        Called from the loop and from the output reader right after the step that raised an injected
        notice, so the command hears it before it runs many more steps."""
        notice = self.watcher.notice
        with self.lock:
            if notice is None or self.deadline is not None or self.child is None:
                return
            self.deadline, _ = notice_deadline(notice, time.time())
            body = {"deadline": self.deadline, "notice_time": notice.notice_time, "source": notice.source}
            tmp = self.notice_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(body), encoding="utf-8")
            os.replace(tmp, self.notice_file)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.child.pid, signal.SIGTERM)

    def supervise(self, child: subprocess.Popen, seen: tuple) -> int:
        """Wait for the command: a notice forwarded, the command killed past the notice's deadline, the
        checkpoint directory mirrored every --checkpoint-every seconds when it changed. Its exit code."""
        next_check = time.monotonic() + self.args.checkpoint_every
        while True:
            try:
                return child.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
            self.forward_notice()
            if self.deadline is not None and time.time() > self.deadline - margin_s():
                with contextlib.suppress(ProcessLookupError):  # the instance goes anyway: S3 has the rest
                    os.killpg(child.pid, signal.SIGKILL)
            if self.deadline is None and time.monotonic() > next_check:
                now_seen = fingerprint(self.user_ckpt)
                if now_seen != seen:
                    self.save()
                    seen = now_seen
                next_check = time.monotonic() + self.args.checkpoint_every

    def finish(self, code: int) -> int:
        """Mirror what the command saved, say how it ended, upload the logs; the command's code."""
        if code in (0, EXIT_INTERRUPTED):
            self.save()
        deadline = self.deadline
        budget = 90.0 if deadline is None else max(0.0, deadline - margin_s() - time.time())
        uploaded = self.mirror.flush(budget) if self.mirror is not None else None
        notice = self.watcher.notice
        if code == EXIT_INTERRUPTED:
            source = notice.source if notice is not None else "sigterm"
            self.events.write(
                "interruption",
                source=source,
                notice_time=notice.notice_time if notice is not None else "",
                step=self.last_step,
                uploaded=uploaded,
                upload_cut=uploaded is False,
            )
        elif code == 0:
            self.events.write("done", step=self.last_step, reason="command")
        else:
            self.events.write("error", message=f"the command exited {code}", step=self.last_step)
        if self.mirror is not None:
            self.mirror.close(budget if uploaded is not False else 0.0)
        self.events.close()
        return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return Supervisor(args).run()
    except TrainerError as err:
        print(f"error: {err.message}" + (f"\nhint: {err.hint}" if err.hint else ""), file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
