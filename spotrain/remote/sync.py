"""Ship a bundle of local files to a directory on the instance, sending only what changed.

Both sides build a manifest (path -> kind, size, mode, sha256) with the same code (agent.walk), each
keeping a stat cache so an unchanged file is not read again. One command, one channel: the agent
sends its manifest, the controller diffs and answers on the same channel's stdin with the paths to
delete and one tar stream of what changed, or with nothing. Nothing changed: the command line is all
that is sent.

The bundle is a list of (local path, path under the remote root) pairs: `trainer/` -> `trainer`, the
run's spec -> `spec.yaml`, each `--include` -> its name. Symlinks are sent as symlinks when they stay
inside their tree and skipped (reported) when they point outside it; none is ever followed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from spotrain.errors import SpotrainError
from spotrain.remote import agent
from spotrain.remote.base import StdinFeeder, Transport, call_agent, state_home
from spotrain.remote.ignore import ignore_rules

DEFAULT_EXCLUDES = ("__pycache__", "*.pyc", ".git", ".DS_Store", ".*.spotrain-tmp", "*.spotrain-tmp")
Entry = list  # [kind, size, mode, digest], as agent.walk returns


@dataclass(frozen=True)
class SyncResult:
    """What one sync did. `bytes_sent` counts everything put on the channels: commands, header, tar."""

    files_sent: int
    bytes_payload: int  # file contents inside the tar stream
    bytes_sent: int
    deleted: tuple[str, ...]
    chmodded: int
    skipped: tuple[str, ...]  # symlinks pointing out of their tree: not followed, not sent
    seconds: float

    @property
    def unchanged(self) -> bool:
        return self.files_sent == 0 and not self.deleted and self.chmodded == 0


@dataclass
class _Bundle:
    """The local side's manifest in remote-relative paths, and where each path's bytes come from."""

    entries: dict[str, Entry] = field(default_factory=dict)
    origin: dict[str, Path] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def sync(
    transport: Transport,
    sources: Path | Sequence[tuple[Path, str]],
    remote_root: str,
    *,
    exclude: Sequence[str] = DEFAULT_EXCLUDES,
    delete: bool = True,
    filtered: Sequence[str] = (),
) -> SyncResult:
    """Make `remote_root` hold exactly the bundle (excluded names aside, which are left alone there).
    The sources sent to a destination in `filtered` leave out what their ignore file names (ignore.py:
    the user's workdir)."""
    start, sent_before = time.monotonic(), transport.bytes_sent
    pairs = [(Path(sources), ".")] if isinstance(sources, str | Path) else list(sources)
    dialogue = _Dialogue(check_sources(pairs), list(exclude), delete, set(filtered))
    args = ["sync", remote_root, _remote_cache(transport, remote_root), json.dumps(list(exclude))]
    call_agent(transport, args, stdin=dialogue.answer, on_output=dialogue.hear).check()
    send, chmod, removed = dialogue.plan
    bundle = dialogue.bundle
    return SyncResult(
        files_sent=len(send),
        bytes_payload=sum(bundle.entries[p][1] for p in send if bundle.entries[p][0] == "f"),
        bytes_sent=transport.bytes_sent - sent_before,
        deleted=tuple(removed),
        chmodded=len(chmod),
        skipped=tuple(bundle.skipped),
        seconds=time.monotonic() - start,
    )


class _Dialogue:
    """The controller's half of `agent.py sync`: hear the remote manifest on stdout, then answer on
    stdin with the changes (a header line and a tar stream), or with nothing at all."""

    def __init__(
        self, sources: list[tuple[Path, str]], exclude: list[str], delete: bool, filtered: set[str]
    ) -> None:
        self.sources, self.exclude, self.delete, self.filtered = sources, exclude, delete, filtered
        self.bundle = _Bundle()
        self.heard = bytearray()
        self.remote: dict[str, Entry] | None = None
        self.ready = threading.Event()
        self.plan: tuple[list[str], dict[str, int], list[str]] = ([], {}, [])

    def hear(self, data: bytes) -> None:
        self.heard += data
        if self.remote is None and b"\n" in self.heard:
            size, _, rest = bytes(self.heard).partition(b"\n")
            if len(rest) >= int(size):
                self.remote = json.loads(zlib.decompress(rest[: int(size)]))
                self.ready.set()

    def answer(self, out: StdinFeeder) -> None:
        self.bundle = build_bundle(self.sources, self.exclude, self.filtered)  # overlaps the remote's walk
        while not self.ready.wait(0.05):
            if out.ended.is_set():  # the agent failed before sending its manifest
                return
        assert self.remote is not None
        self.plan = send, chmod, removed = diff(self.bundle.entries, self.remote, delete=self.delete)
        if send or chmod or removed:
            digests = {p: self.bundle.entries[p][3] for p in send if self.bundle.entries[p][0] == "f"}
            header = json.dumps({"delete": removed, "chmod": chmod, "digests": digests}).encode() + b"\n"
            _write_stream(out, header, send, self.bundle)


def check_sources(pairs: Sequence[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """(absolute local path, destination prefix) for each source, or the SpotrainError naming it."""
    checked = []
    for local, dest in pairs:
        local = Path(local).expanduser().absolute()
        prefix = "" if dest in ("", ".") else _safe_dest(dest)
        if not (local.is_dir() or local.is_file()):
            raise SpotrainError(
                f"cannot sync {local}: it does not exist or is not a file or directory",
                hint="check the paths given to --include",
            )
        if local.is_file() and not prefix:
            raise SpotrainError(f"cannot sync the file {local} onto the remote root itself", hint="name it")
        checked.append((local, prefix))
    return checked


def build_bundle(
    sources: list[tuple[Path, str]], exclude: list[str], filtered: set[str] | frozenset[str] = frozenset()
) -> _Bundle:
    """The local manifest of all sources (from check_sources), keyed by their path under the remote root;
    a directory sent to a prefix in `filtered` without what its ignore file names."""
    bundle = _Bundle()
    for local, prefix in sources:
        if prefix:
            _add_parents(bundle, prefix)
        if local.is_file():
            st = local.stat()
            entry = ["f", st.st_size, st.st_mode & 0o7777, agent.file_digest(str(local))]
            _add(bundle, prefix, entry, local, local)
            continue
        if prefix:
            _add(bundle, prefix, ["d", 0, local.stat().st_mode & 0o7777, ""], local, local)
        cache_file = _local_cache(local)
        cache = agent.load_cache(str(cache_file))
        ignored = ignore_rules(local)[1] if prefix in filtered else None
        for rel, entry in agent.walk(str(local), cache, exclude).items():
            if ignored is not None and _under_ignored(rel, entry[0] == "d", ignored):
                continue
            if entry[0] == "l" and agent.link_escapes(rel, (local / rel).readlink().as_posix()):
                bundle.skipped.append(str(local / rel))
                continue
            _add(bundle, f"{prefix}/{rel}" if prefix else rel, entry, local / rel, local)
        agent.save_cache(str(cache_file), cache)
    return bundle


def _under_ignored(rel: str, is_dir: bool, ignored) -> bool:
    """`rel` or one of its parent directories is ignored (git never looks inside an ignored directory)."""
    parts = rel.split("/")
    parents = ("/".join(parts[:i]) for i in range(1, len(parts)))
    return any(ignored(p, True) for p in parents) or ignored(rel, is_dir)


def diff(
    local: dict[str, Entry], remote: dict[str, Entry], *, delete: bool = True
) -> tuple[list[str], dict[str, int], list[str]]:
    """(paths to send, {path: mode} to chmod, paths to delete first) to turn `remote` into `local`."""
    send, chmod, removed = [], {}, []
    for path, (kind, size, mode, digest) in sorted(local.items()):
        theirs = remote.get(path)
        if theirs is None:
            send.append(path)
        elif theirs[0] != kind:
            removed.append(path)
            send.append(path)
        elif kind != "d" and (theirs[1], theirs[3]) != (size, digest):
            send.append(path)
        elif kind != "l" and theirs[2] != mode:
            chmod[path] = mode
    if delete:
        removed.extend(p for p in remote if p not in local)
    return send, chmod, _outermost(removed)


def _outermost(paths: list[str]) -> list[str]:
    """Drop paths whose parent directory is also being deleted."""
    out: list[str] = []
    for path in sorted(set(paths)):
        if not any(path.startswith(p + "/") for p in out):
            out.append(path)
    return out


def _write_stream(out: StdinFeeder, header: bytes, send: list[str], bundle: _Bundle) -> None:
    """The header line, then a tar stream of `send` (headers written by tarfile, data copied here, so
    there is no end-of-record padding: a one-file change costs the file plus about 1.5 KB)."""
    out.write(header)
    for path in send:
        kind, size, mode, _ = bundle.entries[path]
        info = tarfile.TarInfo(path)
        info.mode, info.mtime = mode, int(time.time())
        source = bundle.origin.get(path)  # None for the parents of a destination like a/b
        if kind == "d":
            info.type = tarfile.DIRTYPE
        elif kind == "l":
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(source)  # type: ignore[arg-type]
        else:
            info.size = size
        out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if kind == "f":
            _copy_exact(source, size, out)  # type: ignore[arg-type]
    out.write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))


def _copy_exact(source: Path, size: int, out: StdinFeeder) -> None:
    left = size
    with open(source, "rb") as f:
        while left:
            block = f.read(min(left, 1 << 20))
            if not block:
                raise SpotrainError(f"{source} shrank while it was being synced", hint="sync again")
            out.write(block)
            left -= len(block)
    out.write(tarfile.NUL * ((-size) % tarfile.BLOCKSIZE))


def _add(bundle: _Bundle, rel: str, entry: Entry, origin: Path, source_root: Path) -> None:
    previous = bundle.entries.get(rel)
    if previous is not None and not (previous[0] == entry[0] == "d"):
        raise SpotrainError(
            f"two sources of the bundle both provide {rel!r} (the second is under {source_root})",
            hint="give the --include paths distinct names",
        )
    bundle.entries[rel] = entry
    bundle.origin[rel] = origin


def _add_parents(bundle: _Bundle, prefix: str) -> None:
    parts = prefix.split("/")
    for i in range(1, len(parts)):
        parent = "/".join(parts[:i])
        if bundle.entries.get(parent, ["d"])[0] != "d":
            raise SpotrainError(f"{parent!r} is both a file and a directory in the bundle", hint="rename one")
        bundle.entries.setdefault(parent, ["d", 0, 0o755, ""])


def _safe_dest(dest: str) -> str:
    try:
        return agent.safe_rel(dest)
    except ValueError:
        raise SpotrainError(
            f"bundle destination {dest!r} leaves the remote directory",
            hint="use a relative path without '..'",
        ) from None


def _local_cache(root: Path) -> Path:
    return state_home() / "sync-cache" / (hashlib.sha256(str(root).encode()).hexdigest()[:16] + ".json")


def _remote_cache(transport: Transport, remote_root: str) -> str:
    key = hashlib.sha256(remote_root.encode()).hexdigest()[:16]
    return f"{transport.state_dir.rstrip('/')}/sync-cache/{key}.json"
