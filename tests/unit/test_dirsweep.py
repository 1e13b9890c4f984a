"""Which directories a walk finds listed ahead (ossmount/fs/dirsweep.py), over an in-memory tree and a fake clock:
the namespace's readdir hooks called as `Namespace._listing` calls them."""

from __future__ import annotations

import trio

from ossmount.fs import dirsweep
from ossmount.fs.attrs import EntryKind
from ossmount.fs.cache import Listing, Node


def tree(top: int, sub: int) -> dict[str, list[str]]:
    """Directory path -> its subdirectory names: `t/a<i>/b<j>`, each with one file."""
    dirs = {"t": [f"a{i}" for i in range(top)]}
    for i in range(top):
        dirs[f"t/a{i}"] = [f"b{j}" for j in range(sub)]
        for j in range(sub):
            dirs[f"t/a{i}/b{j}"] = []
    return dirs


class Walker:
    def __init__(self, nursery, dirs: dict[str, list[str]], *, headed: bool = False):
        self.dirs = dirs
        self.now = 0.0
        self.cache: dict[str, Listing] = {}
        self.listed: list[str] = []  # every LIST, in order
        self.by_readdir: list[str] = []  # those a readdir sent itself
        self.walks = dirsweep.TreeWalks(nursery=nursery, enabled=True, headed=headed, fetch=self.fetch,
                                        keep=self.cache.__setitem__, cached=self.cache.get,
                                        monotonic=lambda: self.now)

    async def fetch(self, path: str) -> Listing:
        self.listed.append(path)
        await trio.sleep(0)
        entries = {name: Node(EntryKind.DIR, None, None) for name in self.dirs[path]}
        entries["file"] = Node(EntryKind.FILE, f"{path}/file", None)
        return Listing(entries)

    async def readdir(self, path: str) -> list[str]:
        listing = self.cache.get(path)
        if listing is None:
            await self.walks.wait(path)
            listing = self.cache.get(path)
        self.walks.visit(path)
        if listing is None:
            self.by_readdir.append(path)
            listing = await self.fetch(path)
            self.cache[path] = listing
        self.walks.read(path)
        return sorted(n for n, node in listing.entries.items() if node.kind is EntryKind.DIR)

    async def find(self, path: str) -> None:
        for name in await self.readdir(path):
            await self.find(f"{path}/{name}")


async def test_a_depth_first_walk_lists_all_but_its_first_directories_ahead_each_once():
    dirs = tree(4, 12)
    async with trio.open_nursery() as nursery:
        walker = Walker(nursery, dirs)
        await walker.find("t")
    assert sorted(walker.listed) == sorted(dirs)
    # `a0` is walked at its second subdirectory, `t` at its second: everything else is listed ahead
    assert walker.by_readdir == ["t", "t/a0", "t/a0/b0", "t/a0/b1", "t/a1"]
    assert walker.walks.started == len(dirs) - 5


async def test_single_directories_read_out_of_order_or_far_apart_list_nothing_ahead():
    async with trio.open_nursery() as nursery:
        walker = Walker(nursery, tree(4, 12))
        for path in ["t", "t/a0", "t/a2", "t/a2/b5", "t/a2/b3", "t/a3/b9"]:
            await walker.readdir(path)
        walker.now += dirsweep.WALK_IDLE + 1
        await walker.readdir("t/a3")  # follows t/a2, but too long after it
        walker.now += dirsweep.WALK_IDLE + 1
        await walker.readdir("t/a2/b4")
    assert walker.walks.started == 0
    assert walker.listed == walker.by_readdir


async def test_a_walk_that_stops_wasted_at_most_a_bounded_number_of_listings():
    dirs = {"t": [f"a{i}" for i in range(40)], **{f"t/a{i}": [f"b{j}" for j in range(40)] for i in range(40)}}
    dirs.update({f"t/a{i}/b{j}": [] for i in range(40) for j in range(40)})
    for headed, window in ((False, dirsweep.WINDOW), (True, dirsweep.WINDOW_HEADED)):
        async with trio.open_nursery() as nursery:
            walker = Walker(nursery, dirs, headed=headed)
            for path in ["t", "t/a0", "t/a0/b0", "t/a0/b1", "t/a1"]:  # a walk shows itself, then stops
                await walker.readdir(path)
        assert len(walker.listed) - 5 <= (2 if headed else 4) * window, (headed, walker.listed)
        assert walker.walks.started > 0


async def test_a_readdir_takes_over_a_listing_ahead_still_queued():
    async with trio.open_nursery() as nursery:
        walker = Walker(nursery, tree(2, 30))
        for path in ["t", "t/a0", "t/a0/b0", "t/a0/b1"]:  # b2..b9 listed ahead: the slots are full
            await walker.readdir(path)
        walker.walks._ahead("t/a0", [f"b{j}" for j in range(10, 20)])  # queued behind them
        await walker.readdir("t/a0/b19")  # not started yet (8 slots): the readdir lists it at once
        assert walker.by_readdir[-1] == "t/a0/b19"
    assert walker.listed.count("t/a0/b19") == 1
