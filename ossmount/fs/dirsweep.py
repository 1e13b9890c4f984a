"""Tree walks find their directories listed ahead (issue 11: `find`, `du`, `ls -R` over many directories).

Theory of operation
- A walk (`find`, `du`, `ls -R`, `rm -r`) reads one directory after the other, depth first, in the order readdir
  returns the names: each readdir waits for its own LIST while the client and the server take turns. When a walk
  shows itself, `TreeWalks` lists the directories it will read next ahead, in parallel, so that the walk's next
  readdirs find their listings cached (or in flight).
- Detection (`visit`, called for every readdir at offset 0): a directory P is *walked* once two of its
  subdirectories are read one after the other in listing order (positions p, p + 1 of P's cached listing). A
  directory read while its parent is walked is walked too (the walk goes through it). A plain `ls` of one
  directory, `ls P; ls P/a; ls P/c`, or any readdir whose parent's listing is not cached lists nothing ahead. A
  walk reads its directories back to back: what a readdir more than WALK_IDLE seconds ago showed is forgotten
  (`ls P/a`, a minute later `ls P/b`, is no walk).
- What goes ahead, at most `window` directories each (WINDOW with readdir_optimize, where a listing is its LIST
  pages only; WINDOW_HEADED otherwise, where a listing also HEADs its entries, and only by rule 1):
    1. reading a subdirectory of a walked directory lists the subdirectories that follow it;
    2. reading a walked directory lists its first subdirectories (a depth-first walk goes there next);
    3. a listing fetched ahead for a walk lists the first subdirectory of that directory too (rule 2 one step
       early, so the walk's descent into it does not wait).
  At most WINDOW listings ahead are in flight per mount, started in the walk's order (depth first: a path's
  components compared in order), so the walk's next directory is never queued behind a later one; a readdir that
  needs a directory whose listing ahead has not started yet (waiting for that bound) lists it itself at once. What
  a walk that stops wasted is bounded by what its last read started: 2 × window listings by rules 1 and 2, and
  one more for each of them by rule 3.
- Consistency: a listing fetched ahead is cached by the namespace's `keep`, the same gate as a readdir's own
  (`Listing.spoiled`: a listing asked from OSS while this mount changed that directory is never cached, the
  readdir lists it again); once cached, this mount's own changes update it in place, and it expires with the stat
  cache's TTL counted from its fetch, like any listing. A readdir waiting for a listing in flight then looks in
  the cache, so it never sees a spoiled one.
- Lifetime: listings go ahead in the mount's nursery (cancelled at unmount); with the stat cache off
  (max_stat_cache_size=0) or no nursery (unit tests) nothing is listed ahead.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import trio

from ossmount.fs import attrs as fsattrs

log = logging.getLogger("ossmount.fs")

WINDOW = 8  # directories listed ahead per rule with readdir_optimize, and listings ahead in flight per mount
WINDOW_HEADED = 2  # the same per rule where a listing HEADs its entries (without readdir_optimize)
MAX_DIRECTORIES = 256  # directories remembered (walked, last subdirectory read), least recently used dropped
WALK_IDLE = 5.0  # seconds: a walk reads its directories back to back; what a readdir this long ago showed is forgotten
_SUBDIRS_REMEMBERED = 8  # listings whose sorted subdirectory names are kept (the walk's current ancestors)
_DIR = fsattrs.EntryKind.DIR


@dataclass
class _Flight:
    done: trio.Event = field(default_factory=trio.Event)
    started: bool = False  # its LIST is out (it holds one of the WINDOW slots)
    claimed: bool = False  # a readdir took it over while it was queued: it lists nothing


def _child(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class TreeWalks:
    """The walks of one mount (see the module docstring).

    `fetch(path)` -> Listing lists a directory (without caching it); `keep(path, listing)` caches it unless a local
    change spoiled it; `cached(path)` -> the cached Listing or None, without counting a cache hit or miss.
    """

    def __init__(self, *, nursery: trio.Nursery | None, enabled: bool, headed: bool, fetch: Callable[[str], Any],
                 keep: Callable[[str, Any], None], cached: Callable[[str], Any],
                 monotonic: Callable[[], float] = time.monotonic):
        self.nursery = nursery
        self.enabled = enabled and nursery is not None
        self.window = WINDOW_HEADED if headed else WINDOW
        # Rules 2 and 3 only where a listing is its LIST pages: HEADing listings of the directories below competed
        # for the HEAD slots with the walk's own (measured: `find` without readdir_optimize 2.8 s -> 3.4 s with them)
        self.descend = not headed
        self.fetch = fetch
        self.keep = keep
        self.cached = cached
        self.monotonic = monotonic
        self._queue: list[tuple[list[str], int, str, _Flight]] = []  # listings ahead waiting for a slot (a heap)
        self._queued = 0
        self._running = 0
        # parent -> (position of the subdirectory last read, when); walked directory -> when a walk last read in it
        self._previous: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._walked: OrderedDict[str, float] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._subdirs: OrderedDict[str, tuple[Any, list[str]]] = OrderedDict()  # path -> (listing, sorted names)
        self.started = 0  # listings started ahead

    # ---- hooks of the namespace's readdir ---------------------------------------------------------

    async def wait(self, path: str) -> None:
        """If `path` is being listed ahead, wait for that listing (then look in the cache); if it is only queued,
        take it over (the caller lists it now)."""
        flight = self._flights.get(path)
        if flight is None:
            return
        if not flight.started:
            flight.claimed = True
            del self._flights[path]
            flight.done.set()
            return
        await flight.done.wait()

    def visit(self, path: str) -> None:
        """A readdir reads `path` from offset 0 (before its listing is known): rules 1 and detection."""
        if not self.enabled or path == "":
            return
        parent, _, name = path.rpartition("/")
        subdirs = self._subdirectories(parent)
        if subdirs is None:
            return
        position = bisect.bisect_left(subdirs, name)
        if position == len(subdirs) or subdirs[position] != name:
            return
        now = self.monotonic()
        previous = self._previous.pop(parent, None)
        self._previous[parent] = (position, now)
        _bound(self._previous)
        if previous is not None and previous[0] == position - 1 and now - previous[1] < WALK_IDLE:
            self._walk(parent, now)
        if self._walking(parent, now):
            self._walk(path, now)
            self._ahead(parent, subdirs[position + 1:position + 1 + self.window])
        self._still_reading(parent, now)

    def read(self, path: str) -> None:
        """`path`'s listing is known to its readdir: rule 2."""
        if not self.enabled or not self.descend or not self._walking(path, self.monotonic()):
            return
        subdirs = self._subdirectories(path)
        if subdirs:
            self._ahead(path, subdirs[:self.window])

    # ---- internals --------------------------------------------------------------------------------

    def _walk(self, path: str, now: float) -> None:
        self._walked.pop(path, None)
        self._walked[path] = now
        _bound(self._walked)

    def _still_reading(self, path: str, now: float) -> None:
        """A readdir under `path` now: a walk through `path` and its ancestors (however long it stays in one
        subtree) goes on."""
        while True:
            if path in self._walked:
                self._walked[path] = now
            known = self._previous.get(path)
            if known is not None:
                self._previous[path] = (known[0], now)
            if not path:
                return
            path = path.rpartition("/")[0]

    def _walking(self, path: str, now: float) -> bool:
        since = self._walked.get(path)
        return since is not None and now - since < WALK_IDLE

    def _subdirectories(self, path: str) -> list[str] | None:
        """The sorted names of the subdirectories in `path`'s cached listing (None: not cached)."""
        listing = self.cached(path)
        if listing is None:
            return None
        known = self._subdirs.get(path)
        if known is None or known[0] is not listing:
            known = (listing, sorted(n for n, node in listing.entries.items() if node.kind is _DIR))
        self._subdirs[path] = known
        self._subdirs.move_to_end(path)
        while len(self._subdirs) > _SUBDIRS_REMEMBERED:
            self._subdirs.popitem(last=False)
        return known[1]

    def _ahead(self, parent: str, names: list[str]) -> None:
        """Queue the listings of `parent`'s subdirectories `names` and start what the in-flight bound allows, first
        the one a depth-first walk reads first: paths compare as their components do, which is the walk's order."""
        for name in names:
            child = _child(parent, name)
            if child not in self._flights and self.cached(child) is None:
                self._flights[child] = flight = _Flight()
                self._queued += 1
                heapq.heappush(self._queue, (child.split("/"), self._queued, child, flight))
        while self._queue and self._running < WINDOW:
            _, _, path, flight = heapq.heappop(self._queue)
            if flight.claimed:
                continue
            flight.started = True
            self._running += 1
            self.started += 1
            self.nursery.start_soon(self._list, path, flight)

    async def _list(self, path: str, flight: _Flight) -> None:
        try:
            listing = await self.fetch(path)
            self.keep(path, listing)
            if self.descend and self._walking(path.rpartition("/")[0], self.monotonic()) \
                    and not listing.spoiled:  # rule 3
                first = min((n for n, node in listing.entries.items() if node.kind is _DIR), default=None)
                if first is not None:
                    self._ahead(path, [first])
        except Exception as exc:  # noqa: BLE001 - the readdir lists it itself and reports what OSS says
            log.debug("listing '%s' ahead failed: %s", path, exc)
        finally:
            if self._flights.get(path) is flight:
                del self._flights[path]
            flight.done.set()
            self._running -= 1
            self._ahead("", [])  # start the next queued listing


def _bound(remembered: OrderedDict) -> None:
    while len(remembered) > MAX_DIRECTORIES:
        remembered.popitem(last=False)
