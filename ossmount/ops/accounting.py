"""Which process causes which OSS requests: the charge of every request attempt, and FUSE operation timing.

Theory of operation
  * The FUSE glue knows the caller of each request (pyfuse3's `ctx.pid`/`ctx.uid`; read, write, flush and
    release carry no ctx and are charged to the process that opened the handle). It runs the handler inside
    `charging(caller, name)`, which sets the `CURRENT` context variable to an `Operation`.
  * The store calls `RequestLedger.attempt(op, key)` at the one place each request attempt starts; the
    attempt is charged to `CURRENT.get().caller`. A trio task copies the context of the task that started it,
    so prefetch GETs and upload parts started by a handler are charged to that handler's caller; requests
    made outside any handler are charged to a named pseudo-process (`MOUNT_CHECK`, `UNMOUNT`, else
    `BACKGROUND`).
  * `ProcessNames` turns a pid into (thread group id, command name, uid) from /proc, cached for a few seconds
    so that a burst of requests from one process costs one /proc read. The kernel reports the *thread* id;
    requests are charged to its thread group (the process), named by the process's `comm`.
  * `CallerTable` is bounded: at most `capacity` processes are kept, ranked by a request count that decays
    with a half-life. When a new process arrives at a full table the lowest-ranked one is folded into the
    `OTHERS` row, so the table's counts always add up to every request the mount made (decay only ranks;
    the counts shown are exact since a process was first seen).

Everything here runs on the trio thread (no locks); nothing does I/O except `ProcessNames` reading /proc.
"""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

DEFAULT_CALLERS = 256  # processes kept in the table before the least active are folded into OTHERS
DEFAULT_HALF_LIFE = 600.0  # seconds: a process idle for 10 minutes ranks half as high
NAME_CACHE_SECONDS = 2.0
NAME_CACHE_SIZE = 4096
ERROR_HISTORY = 20
# Request latency buckets (seconds): OSS answers in milliseconds on the same region, seconds over the internet.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# FUSE operation buckets: a cached lookup takes tens of microseconds, an upload at close seconds.
FUSE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0)


@dataclass(frozen=True)
class Caller:
    """Who a request is charged to: a process (`pid` is its thread group id) or a named pseudo-process (pid
    None, command in brackets)."""

    pid: int | None
    command: str
    uid: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "command": self.command, "uid": self.uid}


MOUNT_CHECK = Caller(None, "[mount]")  # the checks before the mount is live
UNMOUNT = Caller(None, "[unmount]")  # files flushed at unmount
BACKGROUND = Caller(None, "[background]")  # anything started outside a FUSE request
KERNEL = Caller(None, "[kernel]")  # FUSE requests the kernel makes on nobody's behalf (pid 0)
OTHERS = Caller(None, "[other processes]")  # processes folded out of a full table


class Operation:
    """One FUSE request (or pseudo-operation) in progress: whom to charge, and the last OSS request id seen,
    which log lines of that operation may name."""

    __slots__ = ("caller", "name", "request_id")

    def __init__(self, caller: Caller, name: str):
        self.caller = caller
        self.name = name
        self.request_id = ""


CURRENT: contextvars.ContextVar[Operation | None] = contextvars.ContextVar("ossmount_operation", default=None)


@contextlib.contextmanager
def charging(caller: Caller, name: str) -> Iterator[Operation]:
    """Charge the requests made in this block (and by tasks it starts) to `caller`."""
    operation = Operation(caller, name)
    token = CURRENT.set(operation)
    try:
        yield operation
    finally:
        CURRENT.reset(token)


def current_caller() -> Caller:
    operation = CURRENT.get()
    return operation.caller if operation is not None else BACKGROUND


def current_request_id() -> str:
    """The OSS request id of the last request the current operation made ("" if none)."""
    operation = CURRENT.get()
    return operation.request_id if operation is not None else ""


class ProcessNames:
    """pid → `Caller` from /proc (`Tgid`, `Uid` of /proc/PID/status, the process's `comm`), cached briefly.

    `proc` is the procfs root (tests point it elsewhere); `clock` is monotonic seconds."""

    def __init__(self, *, proc: str = "/proc", ttl: float = NAME_CACHE_SECONDS, size: int = NAME_CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic):
        self._proc = proc
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._cache: dict[int, tuple[float, Caller]] = {}
        self.lookups = 0  # /proc reads made (for tests of the cache)

    def caller(self, pid: int, uid: int | None = None) -> Caller:
        if pid <= 0:
            return KERNEL
        now = self._clock()
        cached = self._cache.get(pid)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        found = self._read(pid, uid)
        if len(self._cache) >= self._size:
            self._cache = {p: entry for p, entry in self._cache.items() if now - entry[0] < self._ttl}
            if len(self._cache) >= self._size:
                self._cache.clear()
        self._cache[pid] = (now, found)
        return found

    def _read(self, pid: int, uid: int | None) -> Caller:
        self.lookups += 1
        fields: dict[str, str] = {}
        try:
            with open(f"{self._proc}/{pid}/status", encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    name, _, value = line.partition(":")
                    if name in ("Name", "Tgid", "Uid"):
                        fields[name] = value.strip()
        except OSError:  # the process is gone already
            return Caller(pid, f"pid {pid}", uid)
        tgid = int(fields.get("Tgid") or pid)
        command = fields.get("Name", f"pid {pid}")
        if tgid != pid:  # a thread: charge its process, under the process's name
            try:
                with open(f"{self._proc}/{tgid}/comm", encoding="utf-8", errors="replace") as handle:
                    command = handle.read().strip() or command
            except OSError:
                pass
        if uid is None and fields.get("Uid"):
            uid = int(fields["Uid"].split()[0])
        return Caller(tgid, command, uid)


class Histogram:
    """Cumulative-bucket histogram (Prometheus semantics): `counts[i]` observations ≤ `buckets[i]`."""

    __slots__ = ("buckets", "counts", "total", "count")

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)  # per bucket, not yet cumulative
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """[(upper bound, observations ≤ it)], ending with (inf, count)."""
        result, running = [], 0
        for bound, count in zip(self.buckets, self.counts):
            running += count
            result.append((bound, running))
        result.append((float("inf"), self.count))
        return result

    def quantile(self, q: float) -> float | None:
        """An upper bound of the q-quantile (the first bucket holding it), None without observations."""
        if not self.count:
            return None
        rank = q * self.count
        for bound, running in self.cumulative():
            if running >= rank:
                return bound
        return float("inf")


@dataclass
class CallerUsage:
    """What one caller cost: attempts per OSS operation, failed attempts and body bytes."""

    caller: Caller
    requests: Counter = field(default_factory=Counter)
    errors: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    _score: float = 0.0
    _score_at: float = 0.0

    def score(self, now: float, half_life: float) -> float:
        return self._score * 0.5 ** ((now - self._score_at) / half_life)

    def bump(self, now: float, half_life: float) -> None:
        self._score = self.score(now, half_life) + 1.0
        self._score_at = now

    def merge(self, other: "CallerUsage") -> None:
        self.requests.update(other.requests)
        self.errors += other.errors
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.last_seen = max(self.last_seen, other.last_seen)

    def to_json(self) -> dict[str, Any]:
        return {**self.caller.to_json(), "requests": dict(self.requests), "total": sum(self.requests.values()),
                "errors": self.errors, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "first_seen": self.first_seen, "last_seen": self.last_seen}


class CallerTable:
    """Requests per caller in at most `capacity` rows plus `OTHERS` (see the module docstring)."""

    def __init__(self, capacity: int = DEFAULT_CALLERS, half_life: float = DEFAULT_HALF_LIFE,
                 clock: Callable[[], float] = time.time):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.half_life = half_life
        self._clock = clock
        self._rows: dict[Caller, CallerUsage] = {}
        self._others: CallerUsage | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def row(self, caller: Caller) -> CallerUsage:
        usage = self._rows.get(caller)
        if usage is None:
            if caller == OTHERS:
                return self._others_row()
            now = self._clock()
            if len(self._rows) >= self.capacity:
                self._fold_lowest(now)
            usage = self._rows[caller] = CallerUsage(caller, first_seen=now, last_seen=now, _score_at=now)
        return usage

    def charge(self, caller: Caller, op: str) -> CallerUsage:
        usage = self.row(caller)
        now = self._clock()
        usage.requests[op] += 1
        usage.last_seen = now
        usage.bump(now, self.half_life)
        return usage

    def _others_row(self) -> CallerUsage:
        if self._others is None:
            now = self._clock()
            self._others = CallerUsage(OTHERS, first_seen=now, last_seen=now, _score_at=now)
        return self._others

    def _fold_lowest(self, now: float) -> None:
        lowest = min(self._rows.values(), key=lambda usage: usage.score(now, self.half_life))
        del self._rows[lowest.caller]
        self._others_row().merge(lowest)

    def rows(self, limit: int | None = None) -> list[CallerUsage]:
        """The callers by decayed activity, most active first (at most `limit`), then OTHERS if it has any."""
        now = self._clock()
        ranked = sorted(self._rows.values(), key=lambda usage: -usage.score(now, self.half_life))
        if limit is not None and len(ranked) > limit:
            folded = CallerUsage(OTHERS)
            for usage in ranked[limit:]:
                folded.merge(usage)
            if self._others is not None:
                folded.merge(self._others)
            return ranked[:limit] + [folded]
        return ranked + ([self._others] if self._others is not None else [])


@dataclass(frozen=True)
class RequestError:
    """One failed request attempt, for `ossmount stats`' last errors."""

    at: float  # epoch seconds
    operation: str
    key: str
    code: str
    status: int
    request_id: str
    message: str
    caller: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "operation": self.operation, "key": self.key, "code": self.code,
                "status": self.status, "request_id": self.request_id, "message": self.message,
                "caller": self.caller}


def _is_routine(op: str, code: str) -> bool:
    """Failures that are answers, not problems: a HEAD of a name that does not exist (every lookup of a new
    name, every negative stat)."""
    return op == "HeadObject" and code in ("NoSuchKey", "NotFound")


class Attempt:
    """One request attempt in progress (see `RequestLedger.attempt`)."""

    __slots__ = ("ledger", "op", "key", "sent", "usage", "started", "operation", "finished")

    def __init__(self, ledger: "RequestLedger", op: str, key: str, sent: int):
        self.ledger = ledger
        self.op = op
        self.key = key
        self.sent = sent
        self.operation = CURRENT.get()
        caller = self.operation.caller if self.operation is not None else BACKGROUND
        self.usage = ledger.callers.charge(caller, op)
        self.started = ledger._monotonic()
        self.finished = False

    def done(self, *, status: int = 200, received: int = 0, request_id: str = "") -> None:
        """The attempt got an answer that is not an error: `received` body bytes."""
        self.finished = True
        self.ledger._finish(self, status, received, request_id, None)

    def __enter__(self) -> "Attempt":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if not self.finished:
            self.finished = True
            self.ledger._finish(self, getattr(exc, "status", 0) or 0, 0, getattr(exc, "request_id", "") or "", exc)


class RequestLedger:
    """Every OSS request attempt of one mount: per operation and HTTP status, latency, bytes, per caller, and
    the last errors. The store creates one and calls `attempt(op, key, sent=)` for each attempt."""

    def __init__(self, *, callers: CallerTable | None = None, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, history: int = ERROR_HISTORY):
        self.callers = callers or CallerTable(clock=clock)
        self._clock = clock
        self._monotonic = monotonic
        self.by_status: Counter = Counter()  # (op, status) -> attempts; status 0: no HTTP answer
        self.errors: Counter = Counter()  # (op, code) -> failed attempts
        self.latency: dict[str, Histogram] = {}
        self.bytes_in = 0
        self.bytes_out = 0
        self.in_flight = 0
        self.last_errors: deque[RequestError] = deque(maxlen=history)

    def attempt(self, op: str, key: str = "", *, sent: int = 0) -> Attempt:
        """Start one attempt of OSS operation `op` on `key`, sending `sent` body bytes; use as a context
        manager and call `done(...)` on an answer. Leaving the block with an exception (a StoreError with its
        code, status and request id, or anything else) records a failure."""
        self.in_flight += 1
        return Attempt(self, op, key, sent)

    def _finish(self, attempt: Attempt, status: int, received: int, request_id: str,
                error: BaseException | None) -> None:
        self.in_flight -= 1
        elapsed = self._monotonic() - attempt.started
        op = attempt.op
        histogram = self.latency.get(op)
        if histogram is None:
            histogram = self.latency[op] = Histogram(LATENCY_BUCKETS)
        histogram.observe(elapsed)
        self.by_status[(op, status)] += 1
        usage = attempt.usage
        if error is None:
            self.bytes_in += received
            self.bytes_out += attempt.sent
            usage.bytes_in += received
            usage.bytes_out += attempt.sent
        else:
            code = getattr(error, "code", "") or type(error).__name__
            self.errors[(op, code)] += 1
            usage.errors += 1
            if not _is_routine(op, code):
                self.last_errors.append(RequestError(
                    at=self._clock(), operation=op, key=attempt.key, code=code, status=status,
                    request_id=request_id, message=str(error).splitlines()[0] if str(error) else code,
                    caller=usage.caller.command))
        if request_id and attempt.operation is not None:
            attempt.operation.request_id = request_id

    def requests_by_operation(self) -> dict[str, int]:
        totals: Counter = Counter()
        for (op, _), count in self.by_status.items():
            totals[op] += count
        return dict(totals)


class FuseStatistics:
    """FUSE requests per operation: count, failures by errno name, latency."""

    def __init__(self) -> None:
        self.latency: dict[str, Histogram] = {}
        self.errors: Counter = Counter()  # (operation, errno name) -> count

    def observe(self, operation: str, seconds: float, error: str | None = None) -> None:
        histogram = self.latency.get(operation)
        if histogram is None:
            histogram = self.latency[operation] = Histogram(FUSE_BUCKETS)
        histogram.observe(seconds)
        if error is not None:
            self.errors[(operation, error)] += 1

    def counts(self) -> dict[str, int]:
        return {operation: histogram.count for operation, histogram in sorted(self.latency.items())}


FILE_HANDLE_OPERATIONS = frozenset({"read", "write", "flush", "fsync", "release"})
DIR_HANDLE_OPERATIONS = frozenset({"readdir", "releasedir", "fsyncdir"})
_OPENING = {"open": "file", "create": "file", "opendir": "dir"}
_CLOSING = {"release": "file", "releasedir": "dir"}


class FuseCall:
    """One FUSE request being served (see `FuseCalls.serving`)."""

    __slots__ = ("calls", "name", "handle", "started", "token")

    def __init__(self, calls: "FuseCalls", name: str, caller: Caller, handle: int | None):
        self.calls = calls
        self.name = name
        self.handle = handle
        self.started = calls._monotonic()
        self.token = CURRENT.set(Operation(caller, name))

    def result(self, value: Any) -> Any:
        """The handler's answer: an open's handle now belongs to this call's caller."""
        kind = _OPENING.get(self.name)
        if kind is not None:
            fh = value if isinstance(value, int) else getattr(value[0] if isinstance(value, tuple) else value, "fh",
                                                                None)
            if fh is not None:
                self.calls._handles[(kind, fh)] = current_caller()
        return value

    def __enter__(self) -> "FuseCall":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        calls = self.calls
        CURRENT.reset(self.token)
        error = None
        if exc is not None:
            number = getattr(exc, "errno", None)
            error = _errno_name(number) if isinstance(number, int) else type(exc).__name__
        calls.statistics.observe(self.name, calls._monotonic() - self.started, error)
        kind = _CLOSING.get(self.name)
        if kind is not None:
            calls._handles.pop((kind, self.handle), None)


def _errno_name(number: int) -> str:
    import errno

    return errno.errorcode.get(number, str(number))


class FuseCalls:
    """The glue's side of accounting: who each FUSE request is for, and how long it took.

    Handlers with a request context are charged to its pid; read/write/flush/fsync/release (and readdir,
    releasedir) to whoever opened the handle. Each request runs with `CURRENT` set (see the module docstring)
    and is timed into `statistics`."""

    def __init__(self, names: ProcessNames | None = None, statistics: FuseStatistics | None = None, *,
                 monotonic: Callable[[], float] = time.monotonic):
        self.names = names or ProcessNames()
        self.statistics = statistics or FuseStatistics()
        self._monotonic = monotonic
        self._handles: dict[tuple[str, int], Caller] = {}

    def serving(self, name: str, args: tuple, kwargs: dict) -> FuseCall:
        """Use as `with calls.serving(name, args, kwargs) as call: return call.result(await handler(...))`."""
        handle = None
        if name in FILE_HANDLE_OPERATIONS:
            handle = args[0]
            caller = self._handles.get(("file", handle), BACKGROUND)
        elif name in DIR_HANDLE_OPERATIONS:
            handle = args[0]
            caller = self._handles.get(("dir", handle), BACKGROUND)
        else:
            ctx = kwargs.get("ctx", args[-1] if args else None)
            pid = getattr(ctx, "pid", None)
            caller = self.names.caller(pid, getattr(ctx, "uid", None)) if isinstance(pid, int) else BACKGROUND
        return FuseCall(self, name, caller, handle)

    def open_handles(self) -> int:
        return len(self._handles)
