"""Pure pieces of the filesystem layer: the inode table and the metadata caches (no kernel, no server)."""

from __future__ import annotations

import errno

import pytest
from pyfuse3 import FUSEError

from ossmount.fs.cache import MetadataCache, Node
from ossmount.fs.errors import FsError, errno_for
from ossmount.fs.inodes import ROOT_INODE, InodeTable
from ossmount.store.types import AccessDenied, InvalidObjectState, NoSuchKey, StoreError


def test_inode_lookup_counts_and_forget():
    table = InodeTable()
    inode = table.remember("a/b")
    assert table.remember("a/b") == inode
    assert table.path(inode) == "a/b"
    table.forget(inode, 1)
    assert table.find("a/b") == inode
    table.forget(inode, 1)
    assert table.find("a/b") is None
    with pytest.raises(KeyError):
        table.path(inode)
    table.forget(ROOT_INODE, 5)
    assert table.path(ROOT_INODE) == ""


def test_inode_rename_moves_descendants_and_detaches_target():
    table = InodeTable()
    d, f, other, target = (table.remember(p) for p in ("d", "d/sub/f", "dx", "e"))
    table.rename("d", "e")
    assert table.path(d) == "e" and table.path(f) == "e/sub/f"
    assert table.path(other) == "dx"
    assert table.path(target).startswith("\0")
    assert table.find("d") is None and table.find("e") == d


def test_cache_ttl_negative_and_invalidation():
    now = [0.0]
    cache = MetadataCache(max_size=10, ttl=5, negative=True, timer=lambda: now[0])
    node = Node("file", "k", None)
    cache.put("a/b", node)
    assert cache.get("a/b") is node
    cache.put_missing("a/c")
    assert cache.is_known_missing("a/c")
    now[0] = 6
    assert cache.get("a/b") is None and not cache.is_known_missing("a/c")
    cache.put("a/b", node)
    cache.invalidate_tree("a")
    assert cache.get("a/b") is None


def test_a_local_change_spoils_the_listings_in_flight_of_its_directory_only():
    """MetadataCache.watching: a change of an entry, of the directory itself, of a tree holding it or of everything
    spoils the watch; a change elsewhere (a sibling, a subdirectory's entry) does not; a watch ends with its block."""
    cache = MetadataCache(max_size=10, ttl=900, negative=False)
    node = Node("file", "k", None)
    changes = {
        "entry created": lambda: cache.put_local("a/b/new", node),
        "entry deleted": lambda: cache.remove_local("a/b/old"),
        "entry invalidated": lambda: cache.invalidate("a/b/f"),
        "the directory removed": lambda: cache.remove_local("a/b"),
        "a tree moved": lambda: cache.invalidate_tree("x"),
        "the bucket gone": cache.clear,
    }
    for reason, change in changes.items():
        with cache.watching("a/b") as watch, cache.watching("") as root:
            change()
        assert watch.spoiled, reason
        assert root.spoiled == (reason in ("a tree moved", "the bucket gone")), reason
    for change in (lambda: cache.put_local("a/c", node), lambda: cache.put_local("a/b/sub/f", node),
                   lambda: cache.remove_local("a/bc/f")):
        with cache.watching("a/b") as watch:
            change()
        assert not watch.spoiled
    with cache.watching("a/b") as watch:
        pass
    cache.put_local("a/b/late", node)
    assert not watch.spoiled  # changes after the answer are the cached listing's to follow (put_local)


def test_cache_disabled_with_size_zero():
    cache = MetadataCache(max_size=0, ttl=900, negative=True)
    cache.put("x", Node("file", "x", None))
    cache.put_missing("y")
    assert cache.get("x") is None and not cache.is_known_missing("y")


def test_negative_cache_only_when_enabled():
    cache = MetadataCache(max_size=10, ttl=900, negative=False)
    cache.put_missing("y")
    assert not cache.is_known_missing("y")


@pytest.mark.parametrize(
    "exc, expected",
    [(FsError(errno.ENOTEMPTY), errno.ENOTEMPTY), (NoSuchKey("x"), errno.ENOENT),
     (AccessDenied("x"), errno.EACCES), (InvalidObjectState("x"), errno.EREMOTE), (StoreError("x"), errno.EIO),
     (ValueError("bug"), errno.EIO)],
)
def test_errno_mapping(exc, expected, caplog):
    assert errno_for(exc) == expected
    if isinstance(exc, ValueError):
        assert "unexpected error" in caplog.text


def test_operations_never_let_other_exceptions_escape():
    import trio

    from ossmount.fs.operations import _fuse_errors

    from ossmount.ops.accounting import FuseCalls

    class Broken:
        calls = FuseCalls()  # what Operations has: the accounting of FUSE calls and the operation deadline
        deadline = None

        @_fuse_errors
        async def getattr(self, inode, ctx=None):
            raise KeyError("bug")

    with pytest.raises(FUSEError) as info:
        trio.run(Broken().getattr, 1)
    assert info.value.errno == errno.EIO
