"""A listing's LIST pages pipelined: the next page is asked for as soon as the head of the page before it arrived.

Theory of operation (issue 11: `ls -l` of 10,000 objects is 10 LIST pages, each waiting for the one before it)
- A page's request needs the token the previous page ends with, so a listing is a chain of round trips: the server
  prepares page N, sends it, this host receives and parses it, asks for page N+1, and so on, each side idle while the
  other works. OSS writes the next page's token at the head of a page, before its entries (listing.ListingHead), so
  `ListingPages` asks for page N+1 as soon as the head of page N has arrived: the server prepares page N+1 while this
  host receives and parses page N, and while the caller works on page N (its `async for` body).
- Rules:
  1. Pages come out in order, and each is the answer to a request with the token that the *parse* of the page before
     it ends with: a page asked for early with a token the parse does not confirm (an answer whose head and body
     disagree, a page retried with another answer) is dropped, its request cancelled, and asked for again. So the
     pages are exactly those of a listing asked for one page after the other, and so are the failures.
  2. At most two pages are asked for and not yet taken by the caller (two LISTs in flight per listing, and at most
     two pages of 1,000 entries held); a page whose head does not tell the token early is followed only once it
     has been parsed, as without pipelining.
  3. A page's failure (after the store's retries) is raised by the `async for` when the caller reaches that page;
     a page asked for ahead that the caller never reaches is cancelled when the `async with` ends.
  4. A listing must advance: a V2 continuation token must change from page to page and a V1 marker must grow (OSS
     lists in order), else TransientError InvalidResponse: a server that keeps answering the same page must not
     make a listing endless.
- Every request is one `fetch(token, on_next_token)` of the store (`ObjectStore.list_pages`), through its one
  request path and retry policy; the requests asked for ahead run in tasks of the listing's own nursery, with the
  caller's context (the FUSE operation's deadline and request accounting).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

import trio

from ossmount.store import types
from ossmount.store.types import ListPage

# fetch(token, on_next_token) -> the page of `token`; on_next_token(token or None) when its head tells early.
Fetch = Callable[[str | None, Callable[[str | None], None]], Awaitable[ListPage]]

_UNTOLD = object()


@dataclass(eq=False)
class _Ask:
    """One page's request: the token it was asked with, and its page or failure once `done`."""

    token: str | None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    page: ListPage | None = None
    error: BaseException | None = None
    early: object = _UNTOLD  # the next token its head told (None: the last page), or _UNTOLD


class ListingPages:
    """The pages of one listing, in order, for `async for` (module rules). Made by `listing_pages`."""

    def __init__(self, nursery: trio.Nursery, fetch: Fetch, *, op: str, prefix: str, v2: bool):
        self._nursery = nursery
        self._fetch = fetch
        self._op = op
        self._prefix = prefix
        self._v2 = v2
        self._asks: dict[int, _Ask] = {}  # page number -> its request, asked for and not yet taken
        self._next = 0  # the page number the caller takes next
        self._token: str | None = None  # the token of that page
        self._finished = False
        self.asked_ahead = 0  # pages asked for before the page before them was parsed
        self.dropped = 0  # of those, pages dropped because the parse did not confirm their token (rule 1)

    def __aiter__(self) -> "ListingPages":
        return self

    async def __anext__(self) -> ListPage:
        if self._finished:
            raise StopAsyncIteration
        number = self._next
        ask = self._asks.pop(number, None)
        if ask is not None and ask.token != self._token:
            ask.scope.cancel()
            self.dropped += 1
            ask = None
        if ask is None:
            ask = self._start(number, self._token)
            self._asks.pop(number)
        await ask.done.wait()
        if ask.error is not None:
            self._finish()
            raise ask.error
        page = ask.page
        assert page is not None
        self._check_advances(page.next_token)
        self._next = number + 1
        self._token = page.next_token
        if page.next_token is None:
            self._finish()
        elif ask.early is not _UNTOLD and ask.early is not None and number + 1 not in self._asks:
            self._start(number + 1, ask.early)  # told while the caller was two pages behind (rule 2)
            self.asked_ahead += 1
        return page

    def _check_advances(self, next_token: str | None) -> None:
        token = self._token
        if next_token is None or token is None:
            return
        if next_token == token or (not self._v2 and next_token < token):
            self._finish()
            raise types.TransientError(f"{self._op} {self._prefix!r}: the server's answer is not usable (the "
                                       f"listing does not advance past {token!r})", code="InvalidResponse",
                                       key=self._prefix)

    def _finish(self) -> None:
        self._finished = True
        for ask in self._asks.values():
            ask.scope.cancel()
        self._asks.clear()

    def _start(self, number: int, token: str | None) -> _Ask:
        ask = self._asks[number] = _Ask(token)
        self._nursery.start_soon(self._run, number, ask)
        return ask

    async def _run(self, number: int, ask: _Ask) -> None:
        with ask.scope:
            try:
                ask.page = await self._fetch(ask.token, lambda token: self._told(number, ask, token))
            except Exception as exc:  # noqa: BLE001 - handed to the caller when it reaches this page (rule 3)
                ask.error = exc
        if ask.page is None and ask.error is None:
            ask.error = trio.TooSlowError("the page was cancelled")  # only a dropped page, which nobody awaits
        ask.done.set()

    def _told(self, number: int, ask: _Ask, token: str | None) -> None:
        """The head of page `number` told the next page's token: ask for it now if rule 2 allows."""
        ask.early = token
        if token is None or self._finished or ask.scope.cancel_called:
            return
        if number + 1 in self._asks or number + 1 > self._next + 1:
            return
        self._start(number + 1, token)
        self.asked_ahead += 1


@contextlib.asynccontextmanager
async def listing_pages(fetch: Fetch, *, op: str, prefix: str, v2: bool) -> AsyncIterator[ListingPages]:
    """`async with listing_pages(...) as pages: async for page in pages: ...` (module rules). An error from the
    body or a page comes out as itself, never wrapped in an exception group."""
    failure: BaseException | None = None
    async with trio.open_nursery() as nursery:
        pages = ListingPages(nursery, fetch, op=op, prefix=prefix, v2=v2)
        try:
            yield pages
        except BaseException as exc:  # noqa: BLE001 - raised again below, outside the nursery
            failure = exc
        pages._finish()
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
