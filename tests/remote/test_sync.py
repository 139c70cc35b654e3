"""Sync: only what changed goes over the wire, deletions follow, symlinks never lead out of the tree."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
from pathlib import Path

import pytest

from spotrain.errors import SpotrainError
from spotrain.remote import SSHTransport, Transport, sync
from spotrain.remote.base import call_agent


def tree_hashes(root: Path) -> dict[str, tuple[str, int]]:
    """{relative path: (sha256 or link target, mode)} read straight from disk, independent of sync."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = ("-> " + os.readlink(path), 0)
            elif path.is_file():
                out[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode & 0o777)
            else:
                out[rel] = ("dir", path.stat().st_mode & 0o777)
    return out


def make_tree(root: Path, files: int, total_bytes: int, seed: int = 0) -> None:
    """`files` files of random (incompressible) bytes, about `total_bytes` in all, in nested dirs."""
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1) for _ in range(files)]
    scale = total_bytes / sum(weights)
    for i, w in enumerate(weights):
        path = root / f"d{i % 23}" / f"e{i % 7}" / f"file{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(max(1, int(w * scale))))
        if i % 50 == 0:
            path.chmod(0o755)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    make_tree(root, 60, 300_000)
    (root / "empty").mkdir()
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    return root


def test_first_sync_then_nothing_changed(transport: Transport, src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    first = sync(transport, src, str(dst))
    assert tree_hashes(dst) == tree_hashes(src)
    assert first.files_sent == len(tree_hashes(src))
    again = sync(transport, src, str(dst))
    assert again.unchanged and again.bytes_sent < 2048, again


def test_one_change_one_deletion_one_chmod(transport: Transport, src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    sync(transport, src, str(dst))
    changed = src / "d3" / "e3" / "file00003.bin"
    changed.write_bytes(b"new contents" * 1000)
    (src / "d4" / "e4" / "file00004.bin").unlink()
    (src / "run.sh").chmod(0o700)
    result = sync(transport, src, str(dst))
    assert result.files_sent == 1 and result.chmodded == 1
    assert result.deleted == ("d4/e4/file00004.bin",)
    assert result.bytes_sent < 12_000 + 4096, result  # the file, its tar header, two commands
    assert tree_hashes(dst) == tree_hashes(src)


def test_a_deleted_directory_and_a_file_that_became_a_directory(
    transport: Transport, src: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "dst"
    sync(transport, src, str(dst))
    for f in (src / "d5").rglob("*.bin"):
        f.unlink()
    for d in sorted((src / "d5").rglob("*"), reverse=True):
        d.rmdir()
    (src / "d5").rmdir()
    (src / "run.sh").unlink()
    (src / "run.sh").mkdir()
    (src / "run.sh" / "inner").write_text("x")
    result = sync(transport, src, str(dst))
    assert "d5" in result.deleted and "run.sh" in result.deleted
    assert tree_hashes(dst) == tree_hashes(src)


def test_symlinks_inside_are_kept_outside_are_not_followed(
    transport: Transport, src: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not ship me")
    (src / "escape").symlink_to(secret)
    (src / "escape_rel").symlink_to("../secret.txt")
    (src / "escape_dir").symlink_to(tmp_path)
    (src / "inside").symlink_to("d1/e1/file00001.bin")
    dst = tmp_path / "dst"
    result = sync(transport, src, str(dst))
    assert sorted(Path(p).name for p in result.skipped) == ["escape", "escape_dir", "escape_rel"]
    assert not (dst / "escape").exists() and not (dst / "escape_rel").is_symlink()
    assert not (dst / "escape_dir").exists()
    assert os.readlink(dst / "inside") == "d1/e1/file00001.bin"
    assert (dst / "inside").read_bytes() == (src / "d1/e1/file00001.bin").read_bytes()
    assert all("do not ship me" not in p.read_text(errors="ignore") for p in dst.rglob("*") if p.is_file())


def test_excluded_names_are_neither_sent_nor_deleted(transport: Transport, src: Path, tmp_path: Path) -> None:
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_bytes(b"local bytecode")
    dst = tmp_path / "dst"
    sync(transport, src, str(dst))
    assert not (dst / "__pycache__").exists()
    (dst / "d1" / "__pycache__").mkdir()
    (dst / "d1" / "__pycache__" / "y.pyc").write_bytes(b"remote bytecode")
    assert sync(transport, src, str(dst)).unchanged
    assert (dst / "d1" / "__pycache__" / "y.pyc").exists()


def test_a_bundle_of_several_sources(transport: Transport, src: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("recipe: digits\n")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "notes.txt").write_text("hello")
    dst = tmp_path / "bundle"
    bundle = [(src, "trainer"), (spec, "spec.yaml"), (extra, "inc/extra")]
    result = sync(transport, bundle, str(dst))
    assert (dst / "spec.yaml").read_text() == "recipe: digits\n"
    assert (dst / "inc" / "extra" / "notes.txt").read_text() == "hello"
    assert tree_hashes(dst / "trainer") == tree_hashes(src)
    assert result.files_sent > 60
    (dst / "stray.txt").write_text("not in the bundle")
    again = sync(transport, bundle, str(dst))
    assert again.deleted == ("stray.txt",) and again.files_sent == 0


def test_bad_bundles_are_refused_with_the_path(transport: Transport, src: Path, tmp_path: Path) -> None:
    with pytest.raises(SpotrainError, match="does not exist"):
        sync(transport, [(tmp_path / "nope", "nope")], str(tmp_path / "dst"))
    with pytest.raises(SpotrainError, match="leaves the remote directory"):
        sync(transport, [(src, "../up")], str(tmp_path / "dst"))
    spec = tmp_path / "spec.yaml"
    spec.write_text("x")
    with pytest.raises(SpotrainError, match="both provide 'run.sh'"):
        sync(transport, [(src, "."), (spec, "run.sh")], str(tmp_path / "dst"))


def test_large_tree_over_ssh(ssh: SSHTransport, tmp_path: Path) -> None:
    """The issue's numbers: 2,000 files, 50 MB; then no change, one change, one deletion."""
    src, dst = tmp_path / "big", tmp_path / "big-remote"
    make_tree(src, 2000, 50_000_000)
    first = sync(ssh, src, str(dst))
    assert tree_hashes(dst) == tree_hashes(src)
    assert first.bytes_payload == sum(p.stat().st_size for p in src.rglob("*.bin"))

    nothing = sync(ssh, src, str(dst))
    assert nothing.unchanged and nothing.bytes_sent < 2048, nothing

    one = src / "d7" / "e0" / "file00007.bin"
    one.write_bytes(os.urandom(one.stat().st_size))
    changed = sync(ssh, src, str(dst))
    assert changed.files_sent == 1
    assert changed.bytes_payload <= changed.bytes_sent < one.stat().st_size + 4096, changed
    assert (dst / "d7" / "e0" / "file00007.bin").read_bytes() == one.read_bytes()

    (src / "d8" / "e1" / "file00008.bin").unlink()
    removed = sync(ssh, src, str(dst))
    assert removed.deleted == ("d8/e1/file00008.bin",) and removed.files_sent == 0
    assert not (dst / "d8" / "e1" / "file00008.bin").exists()


def test_the_agent_never_deletes_or_writes_through_a_remote_symlink(local: Transport, tmp_path: Path) -> None:
    """A stale or hostile remote tree where `d` is a symlink to a directory outside the destination."""
    outside, dst = tmp_path / "outside", tmp_path / "dst"
    outside.mkdir()
    dst.mkdir()
    (outside / "precious").write_text("keep")
    mode_before = (outside / "precious").stat().st_mode
    (dst / "d").symlink_to(outside)

    def stream(out) -> None:
        header = {"delete": ["d/precious"], "chmod": {"d/precious": 0o600}}
        out.write(json.dumps(header).encode() + b"\n")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("d/new")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
        out.write(buf.getvalue())

    result = call_agent(local, ["sync", str(dst), str(tmp_path / "cache.json"), "[]"], stdin=stream)
    assert result.exit_code == 1 and b"'d' is not a directory" in result.stderr
    assert (outside / "precious").read_text() == "keep" and not (outside / "new").exists()
    assert (outside / "precious").stat().st_mode == mode_before
