"""Local blob backend specifics: the root is a hard wall, and writes are all-or-nothing."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fleet_artifacts.core.errors import InvalidInput, SignatureRejected
from fleet_artifacts.stores.local_blob import LocalBlobStore
from fleet_artifacts.stores.signing import UrlSigner, load_or_create_key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../x",
        "a/../../x",
        "/etc/passwd",
        "a//b",
        "a/./b",
        "a\\..\\b",
        "a\0b",
        "x/",
        "k.meta",
        "fleet/p/j/1-log.sealed",
        "d/.tmp-123",
    ],
)
def test_keys_that_could_escape_or_collide_are_refused(local_blobs: LocalBlobStore, key: str) -> None:
    with pytest.raises(InvalidInput):
        local_blobs.path_of(key)


def test_a_symlink_out_of_the_root_is_refused(local_blobs: LocalBlobStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (local_blobs.root / "fleet").mkdir()
    os.symlink(outside, local_blobs.root / "fleet" / "link")
    with pytest.raises(InvalidInput):
        local_blobs.path_of("fleet/link/secret")


async def test_a_failed_write_leaves_no_file_and_no_temp(local_blobs: LocalBlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * (3 * 1024 * 1024)
        raise InvalidInput("connection lost")

    with pytest.raises(InvalidInput):
        await local_blobs.write("fleet/p/j/1-log", broken(), content_type="a/b", max_bytes=10**9)
    leftovers = [p for p in local_blobs.root.rglob("*") if p.is_file()]
    assert leftovers == []


async def test_overwrite_is_atomic_rename(local_blobs: LocalBlobStore) -> None:
    async def once(data: bytes) -> AsyncIterator[bytes]:
        yield data

    await local_blobs.write("fleet/p/j/1-log", once(b"old"), content_type="a/b", max_bytes=10)
    inode_before = local_blobs.path_of("fleet/p/j/1-log").stat().st_ino
    await local_blobs.write("fleet/p/j/1-log", once(b"new"), content_type="a/c", max_bytes=10)
    path = local_blobs.path_of("fleet/p/j/1-log")
    assert path.read_bytes() == b"new" and path.stat().st_ino != inode_before
    assert sorted(p.name for p in path.parent.iterdir()) == ["1-log", "1-log.meta"]


def test_signer_refuses_forgery_expiry_and_missing_permission() -> None:
    signer = UrlSigner(b"s" * 32)
    query = dict(p.split("=", 1) for p in signer.sign("k", "r", expires_at=2000, rsct="a/b").split("&"))
    query["rsct"] = "a/b"  # urlencode escaped the slash; verify sees decoded values
    assert signer.verify("k", "r", query, now=1999)["rsct"] == "a/b"
    with pytest.raises(SignatureRejected, match="expired"):
        signer.verify("k", "r", query, now=2000)
    with pytest.raises(SignatureRejected, match="does not grant"):
        signer.verify("k", "w", query, now=0)
    with pytest.raises(SignatureRejected, match="signature"):
        signer.verify("k2", "r", query, now=0)
    with pytest.raises(SignatureRejected, match="signature"):
        UrlSigner(b"t" * 32).verify("k", "r", query, now=0)
    with pytest.raises(SignatureRejected, match="not signed"):
        signer.verify("k", "r", {"se": "x"}, now=0)
    with pytest.raises(ValueError, match="32 bytes"):
        UrlSigner(b"short")


def test_signing_key_is_made_once_and_shared(tmp_path: Path) -> None:
    first = load_or_create_key(None, tmp_path)
    assert len(first) >= 32 and load_or_create_key(None, tmp_path) == first
    assert load_or_create_key("c" * 32, tmp_path) == b"c" * 32
