"""The far side of the remote layer: one stdlib-only script, copied to the instance once (named by its
hash) and run there with `python3 agent.py VERB ...`. It must run on any Python >= 3.8 and import
nothing but the standard library. The controller also imports `walk` and `safe_rel` from it, so both
sides build their manifests with the same code.

Verbs (stdout is the answer; a failure exits non-zero with the reason on stderr):
    sync ROOT CACHE EXCLUDES            stdout: the manifest, zlib(JSON {path: [kind, size, mode, digest]});
                                        then stdin: a JSON header line and a tar stream, or nothing
    launch RUN CWD ENV -- ARGV...       start ARGV detached; JSON {"pid": ...}
    status RUN                          JSON: state (absent|running|exited|lost), pid, exit_code, signal, waiting
    stop RUN GRACE                      SIGTERM, then SIGKILL to its group after GRACE s; JSON status
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import posixpath
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
import zlib

CHUNK = 1 << 20


def _read(path: str):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ---- Manifests -------------------------------------------------------------------------------


def excluded(rel: str, patterns: list) -> bool:
    """True when any component of the relative path matches one of the fnmatch patterns."""
    return any(fnmatch.fnmatch(part, p) for part in rel.split("/") for p in patterns)


def safe_rel(rel: str) -> str:
    """The normalized relative path, or ValueError if it is absolute, empty or climbs out with '..'."""
    norm = posixpath.normpath(rel)
    if rel.startswith("/") or norm in ("", ".") or norm == ".." or norm.startswith("../"):
        raise ValueError(f"unsafe path in bundle: {rel!r}")
    return norm


def link_escapes(rel: str, target: str) -> bool:
    """True when a symlink at `rel` (relative to the tree's root) points outside the tree."""
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    return target.startswith("/") or joined == ".." or joined.startswith("../")


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def walk(root: str, cache: dict, patterns: list) -> dict:
    """{rel: [kind, size, mode, digest]} for everything under root, never following a symlink: kind f
    (file), d (directory) or l (symlink, digest = sha256 of its target). A file whose size, mtime and
    inode match `cache` (rel -> [size, mtime_ns, ino, digest]) is not read again; `cache` is updated
    in place to what was seen."""
    out, seen = {}, {}
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, rel_dir) if rel_dir else root))
        except FileNotFoundError:
            continue
        for entry in entries:
            rel = rel_dir + "/" + entry.name if rel_dir else entry.name
            if excluded(rel, patterns):
                continue
            st = entry.stat(follow_symlinks=False)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(entry.path)
                out[rel] = ["l", len(target), 0o777, hashlib.sha256(target.encode()).hexdigest()]
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ["d", 0, mode, ""]
                stack.append(rel)
            elif stat.S_ISREG(st.st_mode):
                key = [st.st_size, st.st_mtime_ns, st.st_ino]
                hit = cache.get(rel)
                digest = hit[3] if hit and hit[:3] == key else file_digest(entry.path)
                seen[rel] = key + [digest]
                out[rel] = ["f", st.st_size, mode, digest]
    cache.clear()
    cache.update(seen)
    return out


def load_cache(path: str) -> dict:
    try:
        return json.loads(_read(path) or "{}")
    except ValueError:
        return {}


def save_cache(path: str, cache: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write_atomic(path, json.dumps(cache, separators=(",", ":")))


def cmd_sync(root: str, cache_path: str, patterns: list) -> None:
    """Send the manifest (length line, then zlib JSON); read back a header line and a tar stream and
    apply them, or nothing (stdin closed) when the trees already match. One exchange, one channel."""
    cache = load_cache(cache_path)
    blob = zlib.compress(json.dumps(walk(root, cache, patterns), separators=(",", ":")).encode(), 1)
    out = sys.stdout.buffer
    out.write(b"%d\n" % len(blob) + blob)
    out.flush()
    header = sys.stdin.buffer.readline().strip()
    summary = {"written": 0, "deleted": 0, "bytes": 0}
    summary = apply(root, cache, patterns, json.loads(header), sys.stdin.buffer) if header else summary
    save_cache(cache_path, cache)
    out.write(json.dumps(summary).encode())


# ---- Applying a change set -------------------------------------------------------------------


class Tree:
    """Writes under one root, refusing any path that would pass through a symlink or leave the root."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.dirs_ok = {""}

    def check_parents(self, rel: str) -> None:
        parent = posixpath.dirname(rel)
        missing = []
        while parent not in self.dirs_ok:
            try:
                st = os.lstat(os.path.join(self.root, parent))
            except FileNotFoundError:
                missing.append(parent)
            else:
                if not stat.S_ISDIR(st.st_mode):
                    raise ValueError(f"refusing to write {rel!r}: {parent!r} is not a directory")
                self.dirs_ok.add(parent)
            parent = posixpath.dirname(parent)
        for d in reversed(missing):
            os.mkdir(os.path.join(self.root, d))
            self.dirs_ok.add(d)

    def parents_are_dirs(self, rel: str) -> bool:
        """True if every directory above rel is a real directory (no symlink to elsewhere on the way)."""
        parent = posixpath.dirname(rel)
        while parent:
            path = os.path.join(self.root, parent)
            if os.path.islink(path) or not os.path.isdir(path):
                return False
            parent = posixpath.dirname(parent)
        return True

    def remove(self, rel: str) -> None:
        rel = safe_rel(rel)
        path = os.path.join(self.root, rel)
        if not self.parents_are_dirs(rel) or not os.path.lexists(path):
            return  # nothing of ours can be under a symlink: never delete through one
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)  # rmtree never follows symlinks
        else:
            os.unlink(path)

    def write_file(self, rel: str, src, size: int, mode: int, digest) -> list:
        """Write via a temporary name; the cache entry records `digest` (the sender's, whose bytes SSH
        protects) or, when none was given, the sha256 of what was written."""
        path = os.path.join(self.root, rel)
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.spotrain-tmp")
        h, left = (None if digest else hashlib.sha256()), size
        with open(tmp, "wb") as f:
            while left:
                block = src.read(min(CHUNK, left))
                if not block:
                    raise ValueError(f"tar stream ended inside {rel!r}")
                if h is not None:
                    h.update(block)
                f.write(block)
                left -= len(block)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        st = os.lstat(path)
        return [st.st_size, st.st_mtime_ns, st.st_ino, digest or h.hexdigest()]


def apply(root: str, cache: dict, patterns: list, header: dict, stdin) -> dict:
    """Delete and chmod what the header lists, then write the tar stream's members, safely."""
    os.makedirs(root, exist_ok=True)
    tree = Tree(root)
    for rel in header.get("delete", []):
        tree.remove(rel)
        for key in [k for k in cache if k == rel or k.startswith(rel + "/")]:
            del cache[key]
    for rel, mode in header.get("chmod", {}).items():
        path = os.path.join(root, safe_rel(rel))
        if tree.parents_are_dirs(safe_rel(rel)) and not os.path.islink(path):
            os.chmod(path, mode)
    written = nbytes = 0
    with tarfile.open(fileobj=stdin, mode="r|", bufsize=1 << 16) as tar:
        for member in tar:
            rel = safe_rel(member.name)
            if excluded(rel, patterns):
                raise ValueError(f"excluded path in bundle: {rel!r}")
            tree.check_parents(rel)
            path = os.path.join(root, rel)
            if member.isdir():
                if not os.path.isdir(path) or os.path.islink(path):
                    tree.remove(rel)
                    os.mkdir(path)
                os.chmod(path, member.mode & 0o7777)
                tree.dirs_ok.add(rel)
            elif member.isreg():
                src = tar.extractfile(member)
                digest = header.get("digests", {}).get(rel)
                cache[rel] = tree.write_file(rel, src, member.size, member.mode & 0o7777, digest)
                nbytes += member.size
            elif member.issym():
                if link_escapes(rel, member.linkname):
                    raise ValueError(f"refusing symlink {rel!r} -> {member.linkname!r}: it leaves the tree")
                tmp = path + ".spotrain-tmp"
                os.symlink(member.linkname, tmp)
                os.replace(tmp, path)
            else:
                raise ValueError(f"refusing {rel!r}: only files, directories and symlinks are synced")
            written += 1
    return {"written": written, "deleted": len(header.get("delete", [])), "bytes": nbytes}


# ---- Detached processes ----------------------------------------------------------------------
# RUN/pid holds the process's pid, RUN/exit_code its exit code (written last, atomically, by the
# supervisor that waits for it), RUN/process.json the details (argv, start time, signal).


def _start_ticks(pid: int):
    """The process's start time in clock ticks since boot (tells a live pid from a reused one)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def cmd_launch(run_dir: str, cwd: str, env_json: str, argv: list) -> None:
    env_json = sys.stdin.read() if env_json == "-" else env_json  # stdin: no value on a command line
    os.makedirs(run_dir, exist_ok=True)
    current = status(run_dir)
    if current["state"] == "running":
        print(f"already running in {run_dir} with pid {current['pid']}", file=sys.stderr)
        sys.exit(3)
    for name in ("exit_code", "pid", "warm"):  # warm: a warm process's marker (warm.py), if one died
        if os.path.exists(os.path.join(run_dir, name)):
            os.unlink(os.path.join(run_dir, name))
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        os.setsid()
        if os.fork() == 0:
            _supervise(run_dir, cwd, json.loads(env_json), argv, w)
        os._exit(0)
    os.close(w)
    os.waitpid(child, 0)
    with os.fdopen(r) as f:
        answer = json.loads(f.read() or '{"error": "the supervisor died before starting"}')
    if "error" in answer:
        print(answer["error"], file=sys.stderr)
        sys.exit(2)
    json.dump(answer, sys.stdout)


def _supervise(run_dir: str, cwd: str, env: dict, argv: list, report_fd: int) -> None:
    """Runs in a new session, detached from the caller's stdio: start argv, record how it ends."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    info = {"argv": argv, "cwd": cwd, "started_at": time.time(), "supervisor": os.getpid()}
    try:
        with open(os.path.join(run_dir, "train.log"), "ab") as log:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=dict(os.environ, **env), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=os.setpgrp,
            )  # fmt: skip
    except OSError as err:
        os.write(report_fd, json.dumps({"error": f"cannot start {argv[0]}: {err}"}).encode())
        os._exit(1)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda *_: None)  # the supervisor outlives the process it watches
    info.update(pid=proc.pid, start_ticks=_start_ticks(proc.pid))
    _write_atomic(os.path.join(run_dir, "process.json"), json.dumps(info))
    _write_atomic(os.path.join(run_dir, "pid"), f"{proc.pid}\n")
    os.write(report_fd, json.dumps({"pid": proc.pid}).encode())
    os.close(report_fd)
    rc = proc.wait()
    info.update(ended_at=time.time(), signal=-rc if rc < 0 else None)
    _write_atomic(os.path.join(run_dir, "process.json"), json.dumps(info))
    _write_atomic(os.path.join(run_dir, "exit_code"), f"{128 - rc if rc < 0 else rc}\n")
    os._exit(0)


def status(run_dir: str) -> dict:
    info = json.loads(_read(os.path.join(run_dir, "process.json")) or "{}")
    pid_text, code_text = (_read(os.path.join(run_dir, name)) for name in ("pid", "exit_code"))
    out = {"state": "absent", "pid": None, "exit_code": None, "signal": None, "waiting": False}
    out.update(started_at=info.get("started_at"), ended_at=info.get("ended_at"))
    if code_text is not None and code_text.strip():
        out.update(state="exited", exit_code=int(code_text), signal=info.get("signal"))
        out["pid"] = int(pid_text) if pid_text else info.get("pid")
    elif pid_text:
        pid = int(pid_text)
        ticks = _start_ticks(pid)
        alive = ticks is not None and ticks == info.get("start_ticks")
        if ticks is None and not os.path.exists("/proc/self/stat"):  # no /proc: trust kill(0)
            alive = _kill(pid, 0)
        out.update(state="running" if alive else "lost", pid=pid)
        out["waiting"] = alive and os.path.exists(os.path.join(run_dir, "warm"))  # a warm process (warm.py)
    return out


def _kill(pid: int, sig: int, group: bool = False) -> bool:
    try:
        (os.killpg if group else os.kill)(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def cmd_stop(run_dir: str, grace: float) -> None:
    st = status(run_dir)
    if st["state"] == "running":
        _kill(st["pid"], signal.SIGTERM)  # the process alone: it forwards to its workers if it has any
        st = _wait_exit(run_dir, grace)
        if st["state"] == "running":
            _kill(st["pid"], signal.SIGKILL, group=True)
            st = _wait_exit(run_dir, 10.0)
    json.dump(st, sys.stdout)


def _wait_exit(run_dir: str, seconds: float) -> dict:
    deadline, lost_since = time.monotonic() + seconds, None
    while True:
        st = status(run_dir)
        now = time.monotonic()
        if st["state"] == "lost":  # dead, but its supervisor may not have written the exit code yet
            lost_since = lost_since or now
        if st["state"] in ("exited", "absent") or now >= deadline or (lost_since and now - lost_since > 2.0):
            return st
        time.sleep(0.05)


def main(argv: list) -> None:
    verb, args = argv[0], argv[1:]
    # The launched command's own `~/` arguments too (the trainer's --run-dir under AwsCloud's workdir
    # "~/spotrain"): Popen runs it without a shell, so nothing else would expand them, and the trainer
    # would write under cwd/~/... while the controller reads ~/... (issue 13, item 2). Here, not in the
    # controller: only the instance knows its home directory. ENV, "-" or JSON, never starts with "~".
    try:
        sep = args.index("--") if verb == "launch" else len(args)
        args = [os.path.expanduser(a) if a.startswith("~") else a for a in args[:sep]] + [
            os.path.expanduser(a) if a.startswith("~/") else a for a in args[sep:]
        ]
        if verb == "sync":
            cmd_sync(args[0], args[1], json.loads(args[2]))
        elif verb == "launch":
            cmd_launch(args[0], args[1], args[2], args[sep + 1 :])
        elif verb == "status":
            json.dump(status(args[0]), sys.stdout)
        elif verb == "stop":
            cmd_stop(args[0], float(args[1]))
        else:
            raise ValueError(f"unknown verb {verb!r}")
    except (ValueError, OSError, tarfile.TarError) as err:
        print(f"spotrain agent {verb}: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
