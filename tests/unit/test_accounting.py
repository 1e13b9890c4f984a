"""Request accounting (issue 13, item 1) without a mount: callers from /proc, the bounded table, the ledger,
the context that tasks inherit, the metrics text the daemon re-exports."""

from __future__ import annotations

import types

import pytest
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ossmount.ops import accounting
from ossmount.ops.accounting import (BACKGROUND, OTHERS, Caller, CallerTable, FuseCalls, Histogram, ProcessNames,
                                     RequestLedger, charging)
from ossmount.ops.metrics import volume_families
from ossmount.store.types import AccessDenied


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_proc(tmp_path, pid: int, *, tgid: int, name: str, uid: int, process_name: str | None = None):
    (tmp_path / str(pid)).mkdir(exist_ok=True)
    (tmp_path / str(pid) / "status").write_text(f"Name:\t{name}\nUmask:\t0022\nState:\tS\nTgid:\t{tgid}\n"
                                                f"Pid:\t{pid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    if process_name is not None:
        (tmp_path / str(tgid)).mkdir(exist_ok=True)
        (tmp_path / str(tgid) / "comm").write_text(process_name + "\n")


def test_a_thread_is_charged_to_its_process_by_the_process_name(tmp_path):
    fake_proc(tmp_path, 501, tgid=500, name="worker-3", uid=1000, process_name="java")
    names = ProcessNames(proc=str(tmp_path))
    assert names.caller(501) == Caller(500, "java", 1000)
    assert names.caller(0) == accounting.KERNEL
    assert names.caller(999) == Caller(999, "pid 999", None)  # already gone


def test_process_names_are_cached_briefly(tmp_path):
    fake_proc(tmp_path, 42, tgid=42, name="find", uid=0)
    clock = Clock()
    names = ProcessNames(proc=str(tmp_path), ttl=2.0, clock=clock)
    for _ in range(100):
        assert names.caller(42).command == "find"
    assert names.lookups == 1
    clock.now += 3
    fake_proc(tmp_path, 42, tgid=42, name="updatedb", uid=0)  # the pid was reused
    assert names.caller(42).command == "updatedb" and names.lookups == 2


def test_the_table_is_bounded_and_its_counts_add_up():
    clock = Clock()
    table = CallerTable(capacity=8, half_life=60.0, clock=clock)
    charged = 0
    for pid in range(1, 1001):
        for _ in range(pid % 5 + 1):
            table.charge(Caller(pid, f"p{pid}"), "HeadObject")
            charged += 1
        clock.now += 0.5
    rows = table.rows()
    assert len(table) == 8 and rows[-1].caller == OTHERS
    assert sum(sum(row.requests.values()) for row in rows) == charged
    assert rows[0].caller.pid > 990  # the recent ones rank first; the old ones were folded
    limited = table.rows(limit=3)
    assert len(limited) == 4 and sum(sum(r.requests.values()) for r in limited) == charged


def test_an_active_process_outranks_a_burst_long_ago():
    clock = Clock()
    table = CallerTable(capacity=4, half_life=10.0, clock=clock)
    for _ in range(100):
        table.charge(Caller(1, "backup"), "ListObjectsV2")
    clock.now += 100  # ten half-lives
    for _ in range(5):
        table.charge(Caller(2, "cat"), "GetObject")
    assert [row.caller.command for row in table.rows()][:2] == ["cat", "backup"]


def test_the_ledger_charges_the_current_caller_and_records_errors():
    ledger = RequestLedger()
    with charging(Caller(7, "cat", 0), "read") as operation:
        with ledger.attempt("GetObject", "a.txt") as attempt:
            attempt.done(status=206, received=100, request_id="R1")
        with pytest.raises(AccessDenied):
            with ledger.attempt("PutObject", "b.txt", sent=5):
                raise AccessDenied("PutObject 'b.txt': denied", code="AccessDenied", status=403, request_id="R2",
                                   key="b.txt")
        assert operation.request_id == "R2" and accounting.current_request_id() == "R2"
    with ledger.attempt("HeadObject", "c"):
        pass
    [cat, background] = ledger.callers.rows()
    assert cat.caller.command == "cat" and dict(cat.requests) == {"GetObject": 1, "PutObject": 1}
    assert cat.bytes_in == 100 and cat.bytes_out == 0 and cat.errors == 1
    assert background.caller == BACKGROUND
    assert ledger.by_status[("PutObject", 403)] == 1 and ledger.by_status[("GetObject", 206)] == 1
    [error] = ledger.last_errors
    assert (error.operation, error.key, error.code, error.request_id, error.caller) == \
        ("PutObject", "b.txt", "AccessDenied", "R2", "cat")
    assert ledger.in_flight == 0 and accounting.current_request_id() == ""


async def test_tasks_started_by_a_handler_carry_its_charge():
    ledger = RequestLedger()
    calls = FuseCalls(names=types.SimpleNamespace(caller=lambda pid, uid: Caller(pid, "reader", uid)))

    async def prefetch() -> None:
        await trio.sleep(0.01)
        with ledger.attempt("GetObject", "big"):
            pass

    async with trio.open_nursery() as nursery:
        context = types.SimpleNamespace(pid=77, uid=5)
        with calls.serving("open", (1, 0, context), {}) as call:
            call.result(types.SimpleNamespace(fh=9))
        with calls.serving("read", (9, 0, 4096), {}):
            nursery.start_soon(prefetch)  # read-ahead outlives the request that started it
        with calls.serving("release", (9,), {}):
            pass
    [row] = ledger.callers.rows()
    assert row.caller == Caller(77, "reader", 5) and dict(row.requests) == {"GetObject": 1}
    assert calls.open_handles() == 0
    assert calls.statistics.counts() == {"open": 1, "read": 1, "release": 1}


def test_histogram_buckets_are_cumulative():
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.5, 0.5, 5.0):
        histogram.observe(value)
    assert histogram.cumulative() == [(0.1, 1), (1.0, 3), (float("inf"), 4)]
    assert histogram.quantile(0.5) == 1.0 and histogram.count == 4


def test_volume_families_add_the_volume_label_and_round_trip():
    class One:
        def collect(self):
            from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

            family = CounterMetricFamily("ossmount_oss_requests", "h", labels=["operation", "status"])
            family.add_metric(["GetObject", "200"], 3)
            yield family
            histogram = HistogramMetricFamily("ossmount_fuse_operation_duration_seconds", "h", labels=["operation"])
            histogram.add_metric(["read"], [("0.1", 1), ("+Inf", 2)], 0.7)
            yield histogram

    registry = CollectorRegistry()
    registry.register(One())
    text = generate_latest(registry).decode()

    class Both:
        def collect(self):
            return volume_families({"pv-a": text, "pv-b": text, "pv-bad": "not { metrics"})

    merged = CollectorRegistry()
    merged.register(Both())
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(merged).decode())}
    requests = families["ossmount_oss_requests"].samples
    assert sorted(s.labels["volume_id"] for s in requests) == ["pv-a", "pv-b"]
    assert all(s.name == "ossmount_oss_requests_total" and s.value == 3 for s in requests)
    counts = [s for s in families["ossmount_fuse_operation_duration_seconds"].samples if s.name.endswith("_count")]
    assert len(counts) == 2 and all(s.value == 2 for s in counts)
