"""Lookups that sweep a directory find their attributes fetched ahead (issue 11: `stat` of every entry).

Theory of operation
- A lookup of a name the caches do not know costs one HEAD, and a sequential `stat` of every entry of a
  directory sends them one after the other: the client and the server take turns, each idle while the other
  works. When lookups keep missing in one directory, that directory is worth knowing: `Sweeps` lists it one
  page (up to 1000 keys, delimiter '/') at a time, as far as the lookups reach, and then
    * a file the page shows is HEADed ahead: lookups of the page's files in name order start the HEADs of the
      following WINDOW files, topped up every REFILL lookups so that they go out and answer together (at most
      WINDOW in flight per mount), and the lookups that follow find their answers ready;
    * a name the page covers but does not show does not exist, without a request, by the rule of a cached
      listing (Namespace.resolve): the page is less than `open_check_window` seconds old, or the negative
      cache (`enable_noobj_cache`) is on;
    * directories (common prefixes, `dir/` markers) and everything else take the ordinary path.
- Rules that bound the requests:
    1. A directory is listed only after TRIGGER lookups in it went to OSS within the stat cache's TTL; its
       pages are fetched in order as lookups pass their end, and a lookup more than PAGES_PER_LOOKUP pages
       beyond what is listed stops the sweep of that directory (a sweep starting deep in a huge directory
       does not list it all). A sequential sweep keeps one page listed ahead: its first lookup in the last page
       listed starts the listing of the next one in the background, so the lookups that reach the end of a page
       find the next one there (a `stat` of 10k names waited for each of its 10 pages in turn, 45-140 ms each,
       ~10 % of its time). A sweep that stops has listed at most one page nobody asked for.
    2. HEADs go ahead only while the lookups follow the page's order (each one the file after the previous),
       so a HEAD nobody asks for costs at most WINDOW per sweep; random lookups get no look-ahead.
- Consistency: an answer fetched ahead is what the lookup's own HEAD would have been a few lookups earlier; it
  is used only if it is younger than AHEAD_FRESH (and the stat cache's TTL): the caches keep a lookup's answer for
  the TTL from the lookup, so its age is how much longer than stat_cache_expire it may be served. It goes through
  the same gate as any fetched answer (Namespace._fetch_and_cache: this mount's own newer knowledge wins). A local
  change of a name (create, delete, rename, metadata) takes the name out of its sweep at once (`changed`); a change
  of a whole tree or the bucket vanishing drops every sweep (`forget_all`). Nothing fetched ahead is ever taken
  for newer than it is (`Node.checked` is when its HEAD answered).
- With the stat cache off (max_stat_cache_size=0) or no mount nursery (unit tests), there is no sweep.
"""

from __future__ import annotations

import bisect
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import trio

from ossmount.fs import names
from ossmount.fs.cache import parent_of
from ossmount.store.types import ObjectInfo

log = logging.getLogger("ossmount.fs")

TRIGGER = 4  # lookups of one directory that went to OSS before it is listed
WINDOW = 16  # files HEADed ahead of a sequential sweep (and HEADs in flight for look-ahead, per mount)
REFILL = 8  # a sequential sweep tops its window up once every REFILL lookups
PAGES_PER_LOOKUP = 2  # pages one lookup may list to reach its name (rule 1)
# An answer fetched ahead is taken only this many seconds after its HEAD answered: the stat cache and the kernel keep
# what a lookup answers for the TTL from the lookup, so an older answer would outlive stat_cache_expire by its age.
AHEAD_FRESH = 1.0
MAX_DIRECTORIES = 64  # directories with sweep state at once (least recently used dropped)

# What `lookup` answers when the sweep has nothing to say: the caller takes the ordinary path.
PASS = object()


def _order(name: str) -> bytes:
    """OSS lists keys in the order of their UTF-8 bytes (which page covers a name is decided in that order)."""
    return name.encode("utf-8", "surrogatepass")


def _covers(state: "_Directory", name: str) -> bool:
    """Whether the pages listed so far cover `name`: both its keys, `name` and `name/` (which sorts after `name-b`,
    `name.b`: '/' is 0x2f), are at or before the pages' last entry (a page ending at `a-b` may leave the directory
    `a/` to the next)."""
    return state.complete or (state.listed and _order(name + "/") <= _order(state.covered))


@dataclass
class _Ahead:
    """One HEAD started ahead of its lookup: set `done` when `info` (None: no such object) or `error` is known."""

    done: trio.Event = field(default_factory=trio.Event)
    info: ObjectInfo | None = None
    error: BaseException | None = None
    answered: float = 0.0  # monotonic time of the answer


@dataclass
class _Directory:
    """What the sweep knows of one directory: the pages listed so far, in name order."""

    seen: float  # monotonic time of the first miss (state older than the TTL is dropped)
    misses: int = 0
    listed: bool = False
    complete: bool = False  # the last page was listed: everything after `covered` is covered too
    covered: str = ""  # the pages' last entry (a directory's with its '/'): names up to it are covered
    token: str | None = None  # to continue the listing
    listed_at: float = 0.0  # monotonic time of the oldest page (the negative answers' age)
    files: list[str] = field(default_factory=list)  # sorted file names of the pages
    other: set[str] = field(default_factory=set)  # directories and names taking the ordinary path
    touched: set[str] = field(default_factory=set)  # names changed locally since they were listed
    ahead: dict[str, _Ahead] = field(default_factory=dict)
    last: int | None = None  # position in `files` of the previous lookup
    refilled: int = -REFILL - 1  # position in `files` of the lookup that last topped up the HEADs ahead
    last_page: int = 0  # position in `files` of the first name of the last page listed
    listing_ahead: bool = False  # the next page is being listed ahead of the lookups
    lock: trio.Lock = field(default_factory=trio.Lock)
    stopped: bool = False


class Sweeps:
    """The sweep state of a mount's directories (see the module docstring).

    `head(key)` -> ObjectInfo | None is the namespace's HEAD (it records the persistent stat cache);
    `list_page(prefix, token)` -> store ListPage; `dir_prefix(path)` the key prefix of a directory.
    """

    def __init__(self, *, nursery: trio.Nursery | None, ttl: float, negative_window: Callable[[], float],
                 head: Callable[[str], Any], list_page: Callable[[str, str | None], Any],
                 dir_prefix: Callable[[str], str], monotonic: Callable[[], float]):
        self.nursery = nursery
        self.enabled = nursery is not None and ttl > 0
        self.ttl = ttl
        self.negative_window = negative_window
        self.head = head
        self.list_page = list_page
        self.dir_prefix = dir_prefix
        self.monotonic = monotonic
        self.limiter = trio.CapacityLimiter(WINDOW)
        self._dirs: OrderedDict[str, _Directory] = OrderedDict()
        self.heads_ahead = 0  # HEADs started ahead of their lookup
        self.pages_ahead = 0  # listing pages asked for ahead of the lookups (rule 1)
        self.page_waits = 0  # lookups that waited for a listing page to cover their name
        self.negative_answers = 0  # lookups answered "no such name" from a page

    # ---- local changes ----------------------------------------------------------------------------

    def changed(self, path: str | None) -> None:
        """This mount changed `path` (created, deleted, renamed, changed its metadata): the sweep forgets it;
        None: anything may have changed (a directory tree, the bucket), every sweep is dropped."""
        if path is None:
            self._dirs.clear()
            return
        state = self._dirs.get(parent_of(path))
        if state is not None:
            name = path.rpartition("/")[2]
            state.touched.add(name)
            state.ahead.pop(name, None)
        if path in self._dirs:
            del self._dirs[path]

    # ---- lookups ----------------------------------------------------------------------------------

    async def lookup(self, path: str) -> tuple[ObjectInfo, float] | None | object:
        """A lookup the caches could not answer: (the object at `path` as a HEAD answered it, the monotonic time
        of that answer), None for "no such name", or PASS for "take the ordinary path"."""
        if not self.enabled or path == "":
            return PASS
        parent, _, name = path.rpartition("/")
        now = self.monotonic()
        state = self._dirs.get(parent)
        if state is not None and now - state.seen >= self.ttl:
            del self._dirs[parent]
            state = None
        if state is None:
            state = self._dirs[parent] = _Directory(seen=now)
            while len(self._dirs) > MAX_DIRECTORIES:
                self._dirs.popitem(last=False)
        else:
            self._dirs.move_to_end(parent)
        if state.stopped or name in state.touched:
            return PASS
        if not state.listed:
            state.misses += 1
            if state.misses < TRIGGER:
                return PASS
        if not _covers(state, name):  # the pages listed so far cover most lookups: no lock, no wait
            self.page_waits += 1
            async with state.lock:
                if not await self._cover(parent, state, name):
                    return PASS
        if self._dirs.get(parent) is not state or name in state.touched:
            return PASS
        position = bisect.bisect_left(state.files, name)
        if position == len(state.files) or state.files[position] != name:
            if name in state.other:
                return PASS
            if now - state.listed_at < self.negative_window():
                self.negative_answers += 1
                return None
            return PASS
        sequential = state.last is not None and position == state.last + 1
        state.last = position
        ahead = state.ahead.pop(name, None)
        if ahead is None:
            ahead = self._start(parent, state, name)
        if sequential and not state.refilled <= position < state.refilled + REFILL:
            # The window is refilled REFILL files at a time: HEADs sent together answer together, and one wake-up of
            # the event loop takes several answers (a HEAD started per lookup costs a wake-up of its own).
            for following in state.files[position + 1:position + 1 + WINDOW]:
                if following not in state.ahead and following not in state.touched:
                    state.ahead[following] = self._start(parent, state, following)
                    self.heads_ahead += 1
            state.refilled = position
        if sequential and position >= state.last_page and state.token is not None and not state.listing_ahead:
            state.listing_ahead = True
            self.pages_ahead += 1
            self.nursery.start_soon(self._list_ahead, parent, state)
        if not ahead.done.is_set():
            await ahead.done.wait()
        if ahead.error is not None or ahead.info is None \
                or self.monotonic() - ahead.answered >= min(self.ttl, AHEAD_FRESH) \
                or name in state.touched:
            return PASS  # the ordinary path asks again (and reports an error as it does)
        return ahead.info, ahead.answered

    async def _cover(self, parent: str, state: _Directory, name: str) -> bool:
        """List pages until `name` is covered (rule 1); False when the sweep stops. Called under `state.lock`."""
        pages = 0
        while not _covers(state, name):
            if pages == PAGES_PER_LOOKUP or self._dirs.get(parent) is not state:
                state.stopped = True
                return False
            if not await self._list_next(parent, state):
                return False
            pages += 1
        return True

    async def _list_ahead(self, parent: str, state: _Directory) -> None:
        """List the page after the last one listed, unless the lookups got there first (rule 1)."""
        token = state.token
        try:
            async with state.lock:
                if state.token == token and token is not None and not state.stopped \
                        and self._dirs.get(parent) is state:
                    await self._list_next(parent, state)
        finally:
            state.listing_ahead = False

    async def _list_next(self, parent: str, state: _Directory) -> bool:
        """List the next page of `parent` into `state` (under `state.lock`); False (the sweep stops) if it
        failed."""
        dir_prefix = self.dir_prefix(parent)
        started = self.monotonic()
        try:
            page = await self.list_page(dir_prefix, state.token)
        except Exception as exc:  # noqa: BLE001 - the ordinary path reports what OSS says
            log.debug("sweep of '%s': listing failed: %s", parent, exc)
            state.stopped = True
            return False
        if not state.listed:
            state.listed_at = started
        state.listed = True
        listed = names.split_listing(dir_prefix, ((info.key, info) for info in page.objects), page.prefixes)
        if listed.files:
            state.last_page = bisect.bisect_left(state.files, min(listed.files))
        state.files.extend(listed.files)  # pages follow each other: no name twice
        state.files.sort()
        state.other.update(listed.dirs)
        state.other.update(key[len(dir_prefix):].rstrip("/") for key, _ in listed.hidden)
        keys = [info.key for info in page.objects] + list(page.prefixes)
        if keys:
            state.covered = max(state.covered, max(keys, key=_order)[len(dir_prefix):], key=_order)
        state.token = page.next_token
        state.complete = page.next_token is None
        return True

    def _start(self, parent: str, state: _Directory, name: str) -> _Ahead:
        ahead = _Ahead()
        key = self.dir_prefix(parent) + name
        self.nursery.start_soon(self._fetch, key, ahead)
        return ahead

    async def _fetch(self, key: str, ahead: _Ahead) -> None:
        try:
            async with self.limiter:
                ahead.info = await self.head(key)
        except Exception as exc:  # noqa: BLE001 - handed to the lookup, which asks again
            ahead.error = exc
        ahead.answered = self.monotonic()
        ahead.done.set()
