"""Inode table: inode numbers <-> paths (relative to the mount prefix), and kernel lookup counts.

Paths have no leading or trailing slash; the root is "". An inode keeps its number while the kernel
holds a reference (lookup count > 0); `forget` drops the mapping when the count reaches zero. A rename
moves the path of the renamed inode and of every known inode below it.
"""

from __future__ import annotations

ROOT_INODE = 1


class InodeTable:
    """Bidirectional inode/path map with lookup counts (trio-atomic: no awaits inside)."""

    def __init__(self) -> None:
        self._path_of: dict[int, str] = {ROOT_INODE: ""}
        self._inode_of: dict[str, int] = {"": ROOT_INODE}
        self._lookups: dict[int, int] = {}
        self._next = ROOT_INODE + 1

    def path(self, inode: int) -> str:
        """The current path of a known inode (KeyError if the kernel forgot it)."""
        return self._path_of[inode]

    def inode_for(self, path: str) -> int:
        """The inode of `path`, allocating one if needed (the lookup count is not changed)."""
        inode = self._inode_of.get(path)
        if inode is None:
            inode = self._next
            self._next += 1
            self._inode_of[path] = inode
            self._path_of[inode] = path
        return inode

    def known(self, inode: int) -> bool:
        return inode in self._path_of

    def find(self, path: str) -> int | None:
        return self._inode_of.get(path)

    def remember(self, path: str) -> int:
        """The kernel got a reference to `path` (lookup, create, readdirplus): count it."""
        inode = self.inode_for(path)
        self._lookups[inode] = self._lookups.get(inode, 0) + 1
        return inode

    def forget(self, inode: int, count: int) -> None:
        """The kernel dropped `count` references; unreferenced inodes leave the table."""
        if inode == ROOT_INODE:
            return
        remaining = self._lookups.get(inode, 0) - count
        if remaining > 0:
            self._lookups[inode] = remaining
            return
        self._lookups.pop(inode, None)
        path = self._path_of.pop(inode, None)
        if path is not None and self._inode_of.get(path) == inode:
            del self._inode_of[path]

    def detach(self, path: str) -> None:
        """`path` no longer names its inode (unlink, rename target): the inode lives on until forgotten."""
        inode = self._inode_of.pop(path, None)
        if inode is not None and inode != ROOT_INODE:
            self._path_of[inode] = f"\0deleted/{inode}"

    def rename(self, old: str, new: str, *, tree: bool = True) -> None:
        """Move `old` (and with `tree`, every known path below it) to `new`."""
        self.detach(new)
        if tree:
            moved = [(p, i) for p, i in self._inode_of.items() if p == old or p.startswith(old + "/")]
        else:
            moved = [(old, self._inode_of[old])] if old in self._inode_of else []
        for p, _ in moved:
            del self._inode_of[p]
        for p, i in moved:
            target = new + p[len(old):]
            self.detach(target)
            self._inode_of[target] = i
            self._path_of[i] = target

    def __len__(self) -> int:
        return len(self._path_of)
