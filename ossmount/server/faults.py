"""Test controls of `ossmount serve`: fault injection, per-operation counters, a request log and the admin API.

Everything here is sans-IO. The HTTP front asks `FaultInjector.decide(op)` once per request (after the
core has classified it) and acts on the returned `FaultPlan`; it reports every finished request to
`RequestCounters` and `RequestLog`. `AdminApi.handle` turns one admin HTTP request into a status and
a JSON document.

Reproducibility: rules are evaluated in order for every request whose operation matches, and each
matching rule with `probability < 1` draws exactly one number from a `random.Random(seed)`. The same
seed and the same sequence of operations therefore give the same faults.

A "hold" rule stalls a request inside the server core, after the operation's locks are taken and before it runs
(a slow metadata store), until `POST /_ossmount/admin/faults/release` or its `delay_ms` runs out; `GET faults`
reports how many requests are held now. Tests use it to prove what may and may not wait for what.
"""

from __future__ import annotations

import collections
import dataclasses
import hmac
import json
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ossmount.server.core import xmlio
from ossmount.server.core.dates import http_date
from ossmount.server.core.errors import OssError

ADMIN_PREFIX = "/_ossmount/admin/"
ADMIN_TOKEN_HEADER = "x-ossmount-admin-token"
REQUEST_LOG_SIZE = 2000

ACTIONS = ("error", "reset", "delay", "bandwidth", "hold")

# Never kept in the request log: they carry credentials (headers left out, query values replaced).
UNLOGGED_HEADERS = frozenset({"authorization", "x-oss-security-token", "x-amz-security-token", "proxy-authorization",
                              "cookie", ADMIN_TOKEN_HEADER})
SECRET_QUERY_PARAMETERS = frozenset({"signature", "x-oss-signature", "security-token", "x-oss-security-token",
                                     "x-amz-signature", "x-amz-security-token"})
REDACTED = "<redacted>"


class FaultConfigError(ValueError):
    """A fault rule document that cannot be applied (unknown action, wrong type, out-of-range value)."""


@dataclass(frozen=True)
class FaultRule:
    """One rule: for requests of operation `op` ("*" = any) perform `action` with `probability`, at most
    `count` times (None = unlimited), after letting the first `skip` matching requests through."""

    action: str
    op: str = "*"
    status: int = 503
    code: str = "ServiceUnavailable"
    message: str = "Injected fault: please retry."
    probability: float = 1.0
    count: int | None = None
    skip: int = 0
    delay_ms: float = 0.0
    bytes_per_second: int = 0
    after_bytes: int = 0

    @classmethod
    def from_json(cls, document: Any) -> "FaultRule":
        """Validate one JSON rule object; raises FaultConfigError."""
        if not isinstance(document, dict):
            raise FaultConfigError("each rule must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(document) - known
        if unknown:
            raise FaultConfigError(f"unknown rule fields: {', '.join(sorted(unknown))}")
        values = {k: v for k, v in document.items() if v is not None or k == "count"}
        try:
            rule = cls(**values)
        except TypeError as exc:
            raise FaultConfigError(str(exc)) from None
        rule._validate()
        return rule

    def _validate(self) -> None:
        if self.action not in ACTIONS:
            raise FaultConfigError(f"action must be one of {', '.join(ACTIONS)}, not {self.action!r}")
        if not isinstance(self.op, str) or not self.op:
            raise FaultConfigError("op must be an operation name or '*'")
        if not isinstance(self.status, int) or not 400 <= self.status <= 599:
            raise FaultConfigError("status must be an HTTP error status (400-599)")
        if not isinstance(self.code, str) or not isinstance(self.message, str):
            raise FaultConfigError("code and message must be strings")
        if not isinstance(self.probability, (int, float)) or not 0.0 <= self.probability <= 1.0:
            raise FaultConfigError("probability must be between 0 and 1")
        if self.count is not None and (not isinstance(self.count, int) or self.count < 0):
            raise FaultConfigError("count must be null or a non-negative integer")
        if not isinstance(self.skip, int) or isinstance(self.skip, bool) or self.skip < 0:
            raise FaultConfigError("skip must be a non-negative integer")
        for name in ("delay_ms", "bytes_per_second", "after_bytes"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise FaultConfigError(f"{name} must be a non-negative number")
        if self.action == "bandwidth" and self.bytes_per_second <= 0:
            raise FaultConfigError("a bandwidth rule needs bytes_per_second > 0")
        if self.action == "hold" and self.delay_ms <= 0:
            raise FaultConfigError("a hold rule needs delay_ms > 0 (the longest it holds a request)")

    def matches(self, op: str) -> bool:
        return self.op == "*" or self.op == op


@dataclass
class FaultPlan:
    """What the front must do to one request. The default plan does nothing."""

    delay_seconds: float = 0.0
    error: FaultRule | None = None
    reset_before_response: bool = False
    reset_after_bytes: int | None = None
    bytes_per_second: int = 0
    hold_seconds: float = 0.0  # stall inside the core (FaultInjector.hold) at most this long


class FaultInjector:
    """Holds the active rules and decides, per request, which of them fire."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._remaining: list[int | None] = []
        self._fired: list[int] = []
        self._seed = 0
        self._random = random.Random(0)
        self._hold = threading.Condition()
        self._held = 0
        self._releases = 0

    def configure(self, rules: list[FaultRule], seed: int = 0) -> None:
        """Replace all rules and reseed the generator."""
        self._rules = list(rules)
        self._remaining = [rule.count for rule in rules]
        self._to_skip = [rule.skip for rule in rules]
        self._fired = [0] * len(rules)
        self._seed = seed
        self._random = random.Random(seed)

    def configure_from_json(self, document: Any) -> None:
        """Apply a `{"seed": N, "rules": [...]}` document; raises FaultConfigError."""
        if not isinstance(document, dict):
            raise FaultConfigError("expected a JSON object with 'rules' (and optionally 'seed')")
        seed = document.get("seed", 0)
        if not isinstance(seed, int):
            raise FaultConfigError("seed must be an integer")
        rules = document.get("rules", [])
        if not isinstance(rules, list):
            raise FaultConfigError("rules must be a list")
        self.configure([FaultRule.from_json(rule) for rule in rules], seed)

    def clear(self) -> None:
        self.configure([], 0)
        self.release_held()

    def hold(self, seconds: float) -> None:
        """Block the calling (worker) thread until `release_held` or `seconds` pass."""
        with self._hold:
            generation = self._releases
            self._held += 1
            try:
                self._hold.wait_for(lambda: self._releases != generation, timeout=seconds)
            finally:
                self._held -= 1

    def release_held(self) -> None:
        """Let every request held now continue."""
        with self._hold:
            self._releases += 1
            self._hold.notify_all()

    def describe(self) -> dict[str, Any]:
        """The active rules with how often each fired and how many firings remain, and how many requests are
        held now."""
        return {
            "seed": self._seed,
            "held": self._held,
            "rules": [
                {**dataclasses.asdict(rule), "fired": fired, "remaining": remaining}
                for rule, fired, remaining in zip(self._rules, self._fired, self._remaining)
            ],
        }

    def decide(self, op: str) -> FaultPlan:
        """Roll the dice for one request of operation `op`."""
        plan = FaultPlan()
        for index, rule in enumerate(self._rules):
            if not rule.matches(op):
                continue
            if self._remaining[index] == 0:
                continue
            if self._to_skip[index] > 0:
                self._to_skip[index] -= 1
                continue
            if rule.probability < 1.0 and self._random.random() >= rule.probability:
                continue
            if rule.action in ("error", "reset") and (plan.error or plan.reset_before_response
                                                       or plan.reset_after_bytes is not None):
                continue  # one terminal fault per request; later rules keep their budget
            if self._remaining[index] is not None:
                self._remaining[index] -= 1
            self._fired[index] += 1
            if rule.action == "delay":
                plan.delay_seconds += rule.delay_ms / 1000.0
            elif rule.action == "bandwidth":
                rates = [r for r in (plan.bytes_per_second, int(rule.bytes_per_second)) if r > 0]
                plan.bytes_per_second = min(rates)
            elif rule.action == "error":
                plan.error = rule
            elif rule.action == "hold":
                plan.hold_seconds = max(plan.hold_seconds, rule.delay_ms / 1000.0)
            elif rule.after_bytes > 0:
                plan.reset_after_bytes = int(rule.after_bytes)
            else:
                plan.reset_before_response = True
        return plan


class RequestCounters:
    """Requests seen per OSS operation name, including faulted ones."""

    def __init__(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()

    def count(self, op: str) -> None:
        self._counts[op] += 1

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self._counts.items()))

    def reset(self) -> None:
        self._counts.clear()


class ConnectionCounters:
    """Client connections that carried OSS requests (admin API calls are not counted): `accepted` since the last
    reset, `open` now, and `peak` (most open at once since the last reset). Tests read them to see connection reuse
    and pool limits."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self.peak = 0

    def opened(self) -> None:
        self.accepted += 1
        self.open += 1
        self.peak = max(self.peak, self.open)

    def closed(self) -> None:
        self.open -= 1

    def snapshot(self) -> dict[str, int]:
        return {"accepted": self.accepted, "open": self.open, "peak": self.peak}

    def reset(self) -> None:
        self.accepted = 0
        self.peak = self.open


def loggable_headers(headers: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Request headers (lowercase names) without those carrying credentials, and the names of those left out."""
    kept = {name: value for name, value in headers.items() if name not in UNLOGGED_HEADERS}
    return kept, sorted(name for name in headers if name in UNLOGGED_HEADERS)


def redact_query(query: str) -> str:
    """A raw query string with signature and security-token values replaced by "<redacted>"."""
    items = []
    for item in query.split("&") if query else []:
        name, sep, _ = item.partition("=")
        items.append(f"{name}={REDACTED}" if sep and name.lower() in SECRET_QUERY_PARAMETERS else item)
    return "&".join(items)


@dataclass(frozen=True)
class RequestRecord:
    """One finished request as the request log reports it.

    `headers` are the request's headers (lowercase names) without the credential-bearing ones, whose names are in
    `withheld_headers` (so a test still sees that a request was signed or carried an STS token); `query` is its raw
    query string with signatures redacted; `traffic_limit` the x-oss-traffic-limit (bit/s) the body was
    throttled to."""

    op: str
    method: str
    bucket: str | None
    key: str | None
    status: int
    bytes: int
    request_bytes: int
    user_agent: str | None
    range: str | None
    fault: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # request headers, lower-case, without credentials
    withheld_headers: list[str] = field(default_factory=list)
    query: str = ""
    traffic_limit: int | None = None


class RequestLog:
    """The last `REQUEST_LOG_SIZE` requests, oldest first."""

    def __init__(self, size: int = REQUEST_LOG_SIZE) -> None:
        # records, or functions that make one: the front hands over the latter, so that a request pays for its
        # record's header filtering and query redaction only if the log is read (tests, operators)
        self._records: collections.deque[RequestRecord | Callable[[], RequestRecord]] = collections.deque(maxlen=size)

    def add(self, record: RequestRecord) -> None:
        self._records.append(record)

    def add_lazily(self, make: Callable[[], RequestRecord]) -> None:
        """Log the record `make()` returns, calling it only when the log is read."""
        self._records.append(make)

    def snapshot(self) -> list[dict[str, Any]]:
        records = [record if isinstance(record, RequestRecord) else record() for record in list(self._records)]
        return [dataclasses.asdict(record) for record in records]

    def reset(self) -> None:
        self._records.clear()


@dataclass
class AdminReply:
    status: int
    document: Any

    def body(self) -> bytes:
        return json.dumps(self.document).encode()


@dataclass
class AdminApi:
    """The `/_ossmount/admin/` endpoints. `token=None` disables the API (every call is refused). `fsck(data=)` checks
    the store's invariants (`GET fsck` answers `{"problems": [...]}`, empty when consistent; `GET fsck/data` also
    recomputes every extent's CRC-64); it blocks writes while it runs, so the front calls it from a worker thread."""

    token: str | None
    faults: FaultInjector = field(default_factory=FaultInjector)
    counters: RequestCounters = field(default_factory=RequestCounters)
    requests: RequestLog = field(default_factory=RequestLog)
    fsck: Callable[..., list[str]] | None = None
    connections: ConnectionCounters = field(default_factory=ConnectionCounters)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> AdminReply:
        """Answer one admin request; `path` is the part after the admin prefix, without query."""
        if self.token is None:
            return AdminReply(403, {"error": "admin API disabled: start the server with --admin-token"})
        offered = headers.get(ADMIN_TOKEN_HEADER, "")
        if not hmac.compare_digest(offered.encode(), self.token.encode()):
            return AdminReply(403, {"error": f"missing or wrong {ADMIN_TOKEN_HEADER} header"})
        route = (method, path.strip("/"))
        # Each endpoint without a request body: the callable's result is the reply (None answers {}).
        simple: dict[tuple[str, str], Callable[[], Any]] = {
            ("GET", "counters"): self.counters.snapshot,
            ("POST", "counters/reset"): self.counters.reset,
            ("GET", "requests"): self.requests.snapshot,
            ("POST", "requests/reset"): self.requests.reset,
            ("GET", "connections"): self.connections.snapshot,
            ("POST", "connections/reset"): self.connections.reset,
            ("GET", "faults"): self.faults.describe,
            ("DELETE", "faults"): self.faults.clear,
            ("POST", "faults/release"): self.faults.release_held,
        }
        if self.fsck is not None:
            fsck = self.fsck
            simple[("GET", "fsck")] = lambda: {"problems": fsck(data=False)}
            simple[("GET", "fsck/data")] = lambda: {"problems": fsck(data=True)}
        if route in simple:
            result = simple[route]()
            return AdminReply(200, {} if result is None else result)
        if route == ("PUT", "faults"):
            try:
                self.faults.configure_from_json(json.loads(body or b"{}"))
            except (ValueError, FaultConfigError) as exc:  # JSONDecodeError is a ValueError
                return AdminReply(400, {"error": str(exc)})
            return AdminReply(200, self.faults.describe())
        if route[1] in {endpoint for _, endpoint in simple}:
            return AdminReply(405, {"error": f"{method} not allowed on {route[1]}"})
        return AdminReply(404, {"error": f"no admin endpoint {path!r}"})


def injected_error_response(rule: FaultRule, *, method: str, bucket: str | None, key: str | None,
                            now: float | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """The OSS error document (status, headers, body) that an "error" rule answers with.

    HEAD gets no body and the document base64-encoded in `x-oss-err`, as OSS does.
    """
    request_id = secrets.token_hex(12).upper()
    error = OssError(rule.status, rule.code, rule.message, ec="0000-00000000",
                     extra=[("Key", key)] if key is not None else None)
    document = xmlio.error_document(error, request_id, f"{bucket}.oss-emulator" if bucket else "oss-emulator")
    headers = [
        ("Server", "AliyunOSS"),
        ("Date", http_date(now if now is not None else time.time())),
        ("x-oss-request-id", request_id),
        ("x-oss-ec", error.ec),
        ("Content-Type", "application/xml"),
    ]
    if method == "HEAD":
        headers.append(("x-oss-err", xmlio.error_header_value(document)))
        return rule.status, headers, b""
    return rule.status, headers, document
