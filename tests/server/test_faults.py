"""Fault injection, request counters and the admin API: the sans-IO rules, then each action as a client sees it."""

from __future__ import annotations

import base64
import os
import time

import oss2
import pytest
import requests

from ossmount.server.faults import AdminApi, FaultConfigError, FaultInjector, FaultRule
from ossmount.testing import AdminClient, AdminError
from tests.server.rawhttp import RawConnection, request_head, v1_headers


@pytest.fixture
def admin(local_server):
    """The session server's admin client; faults are always cleared after the test."""
    client = local_server.admin
    client.clear_faults()
    try:
        yield client
    finally:
        client.clear_faults()


# -- sans-IO ------------------------------------------------------------------------------------------


def test_rules_match_by_operation_and_honour_count():
    injector = FaultInjector()
    injector.configure([FaultRule(action="error", op="GetObject", count=2)])
    plans = [injector.decide(op) for op in ("HeadObject", "GetObject", "GetObject", "GetObject")]
    assert [plan.error is not None for plan in plans] == [False, True, True, False]
    assert injector.describe()["rules"][0]["fired"] == 2


def test_skip_lets_the_first_matching_requests_through():
    injector = FaultInjector()
    injector.configure([FaultRule(action="delay", op="ListObjectsV2", skip=1, delay_ms=100)])
    plans = [injector.decide(op) for op in ("HeadObject", "ListObjectsV2", "ListObjectsV2", "ListObjectsV2")]
    assert [plan.delay_seconds for plan in plans] == [0.0, 0.0, 0.1, 0.1]
    with pytest.raises(FaultConfigError):
        FaultRule.from_json({"action": "delay", "skip": -1})


def test_same_seed_gives_same_faults():
    def pattern(seed: int) -> list[bool]:
        injector = FaultInjector()
        injector.configure([FaultRule(action="error", probability=0.5)], seed=seed)
        return [injector.decide("GetObject").error is not None for _ in range(64)]

    assert pattern(7) == pattern(7)
    assert pattern(7) != pattern(8)
    assert 10 < sum(pattern(7)) < 54


def test_actions_combine_into_one_plan():
    injector = FaultInjector()
    injector.configure([
        FaultRule(action="delay", delay_ms=250),
        FaultRule(action="bandwidth", bytes_per_second=1000),
        FaultRule(action="reset", after_bytes=10),
        FaultRule(action="error"),  # a second terminal fault is not applied
    ])
    plan = injector.decide("GetObject")
    assert (plan.delay_seconds, plan.bytes_per_second, plan.reset_after_bytes, plan.error) == (0.25, 1000, 10, None)


@pytest.mark.parametrize("document", [
    {"rules": [{"action": "explode"}]},
    {"rules": [{"action": "error", "probability": 2}]},
    {"rules": [{"action": "bandwidth"}]},
    {"rules": [{"action": "error", "colour": "red"}]},
    {"rules": "error"},
    {"seed": "x", "rules": []},
])
def test_invalid_fault_documents_are_refused(document):
    with pytest.raises(FaultConfigError):
        FaultInjector().configure_from_json(document)


def test_admin_api_needs_its_token():
    api = AdminApi(token="secret")
    assert api.handle("GET", "counters", {}, b"").status == 403
    assert api.handle("GET", "counters", {"x-ossmount-admin-token": "wrong"}, b"").status == 403
    assert api.handle("GET", "counters", {"x-ossmount-admin-token": "secret"}, b"").status == 200
    assert AdminApi(token=None).handle("GET", "counters", {"x-ossmount-admin-token": ""}, b"").status == 403


# -- over HTTP ----------------------------------------------------------------------------------------


def test_admin_refused_without_or_with_wrong_token(local_server):
    for token in ("", "not-the-token"):
        client = AdminClient(local_server.host, local_server.port, token)
        with pytest.raises(AdminError) as caught:
            client.counters()
        assert caught.value.status == 403


def test_bad_fault_document_is_400(admin):
    with pytest.raises(AdminError) as caught:
        admin.set_faults([{"action": "error", "probability": -1}])
    assert caught.value.status == 400


def test_counters_per_operation_and_reset(local_server, oss_bucket, admin):
    admin.reset_counters()
    oss_bucket.put_object("counted", b"x")
    oss_bucket.get_object("counted").read()
    oss_bucket.get_object("counted").read()
    oss_bucket.head_object("counted")
    oss_bucket.get_object_meta("counted")
    list(oss2.ObjectIterator(oss_bucket))
    counters = admin.counters()
    assert counters["PutObject"] == 1
    assert counters["GetObject"] == 2
    assert counters["HeadObject"] == 1
    assert counters["GetObjectMeta"] == 1
    assert counters["ListObjects"] == 1
    admin.reset_counters()
    assert admin.counters() == {}


def test_error_fault_is_an_oss_error_and_is_counted(oss_bucket, admin):
    oss_bucket.put_object("faulty", b"data")
    admin.reset_counters()
    admin.set_faults([{"op": "GetObject", "action": "error", "status": 503, "code": "ServiceUnavailable",
                       "count": 1}])
    with pytest.raises(oss2.exceptions.ServerError) as caught:
        oss_bucket.get_object("faulty")
    assert (caught.value.status, caught.value.code) == (503, "ServiceUnavailable")
    assert oss_bucket.get_object("faulty").read() == b"data"  # count exhausted
    assert oss_bucket.head_object("faulty").content_length == 4  # other operations untouched
    assert admin.counters()["GetObject"] == 2


def test_error_fault_on_head_uses_x_oss_err(local_server, oss_bucket, fresh_bucket_name, admin):
    oss_bucket.put_object("faulty-head", b"data")
    admin.set_faults([{"op": "HeadObject", "action": "error", "status": 500, "code": "InternalError"}])
    with RawConnection(local_server) as connection:
        connection.send(request_head("HEAD", fresh_bucket_name, "faulty-head",
                                     v1_headers(local_server, "HEAD", fresh_bucket_name, "faulty-head")))
        status, headers, body = connection.read_response(head_request=True)
    assert status == 500 and body == b""
    assert b"<Code>InternalError</Code>" in base64.b64decode(headers["x-oss-err"])
    with pytest.raises(oss2.exceptions.ServerError) as caught:
        oss_bucket.head_object("faulty-head")
    assert caught.value.code == "InternalError"


def test_error_fault_on_put_stores_nothing(oss_bucket, admin):
    admin.set_faults([{"op": "PutObject", "action": "error", "status": 500, "code": "InternalError",
                       "count": 1}])
    with pytest.raises(oss2.exceptions.ServerError):
        oss_bucket.put_object("never", os.urandom(500_000))
    admin.clear_faults()
    assert not oss_bucket.object_exists("never")


def test_seeded_probability_is_reproducible_over_http(oss_bucket, admin):
    oss_bucket.put_object("dice", b"x")

    def run() -> list[bool]:
        admin.set_faults([{"op": "HeadObject", "action": "error", "probability": 0.5}], seed=1234)
        outcome = []
        for _ in range(24):
            try:
                oss_bucket.head_object("dice")
                outcome.append(True)
            except oss2.exceptions.ServerError:
                outcome.append(False)
        return outcome

    first = run()
    assert run() == first
    assert True in first and False in first


def test_delay_fault_adds_latency(oss_bucket, admin):
    oss_bucket.put_object("slow", b"x")
    admin.set_faults([{"op": "GetObject", "action": "delay", "delay_ms": 400}])
    started = time.monotonic()
    assert oss_bucket.get_object("slow").read() == b"x"
    assert time.monotonic() - started >= 0.4


def test_bandwidth_fault_throttles_the_body(oss_bucket, admin):
    payload = os.urandom(300_000)
    oss_bucket.put_object("throttled", payload)
    admin.set_faults([{"op": "GetObject", "action": "bandwidth", "bytes_per_second": 1_000_000}])
    started = time.monotonic()
    assert oss_bucket.get_object("throttled").read() == payload
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 5


def test_reset_before_response(local_server, oss_bucket, fresh_bucket_name, admin):
    oss_bucket.put_object("reset", b"x")
    admin.set_faults([{"op": "GetObject", "action": "reset", "count": 1}])
    with RawConnection(local_server) as connection:
        connection.send(request_head("GET", fresh_bucket_name, "reset",
                                     v1_headers(local_server, "GET", fresh_bucket_name, "reset")))
        with pytest.raises(ConnectionError):
            connection.read_response()
    assert oss_bucket.get_object("reset").read() == b"x"


def test_reset_mid_body_is_seen_by_oss2(local_server, oss_bucket, fresh_bucket_name, admin):
    payload = os.urandom(200_000)
    oss_bucket.put_object("cut-short", payload)
    admin.set_faults([{"op": "GetObject", "action": "reset", "after_bytes": 50_000}])
    with RawConnection(local_server) as connection:
        connection.send(request_head("GET", fresh_bucket_name, "cut-short",
                                     v1_headers(local_server, "GET", fresh_bucket_name, "cut-short")))
        status, headers = connection.read_head()
        assert status == 200 and headers["content-length"] == str(len(payload))
        with pytest.raises(ConnectionError) as caught:
            connection.read_body(len(payload))
    # the reader saw exactly the bytes sent before the reset (or the reset itself, if it came first)
    assert "50000 of 200000" in str(caught.value) or isinstance(caught.value, ConnectionResetError)
    # oss2 reads through requests, which reports a body cut short by a reset as ChunkedEncodingError
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        oss_bucket.get_object("cut-short").read()
    admin.clear_faults()
    assert oss_bucket.get_object("cut-short").read() == payload


def test_hold_rules_stall_until_released_and_report_how_many_wait():
    import threading

    injector = FaultInjector()
    injector.configure([FaultRule(action="hold", op="PutObject", delay_ms=60_000, count=1)])
    plan = injector.decide("PutObject")
    assert plan.hold_seconds == 60.0 and injector.decide("PutObject").hold_seconds == 0.0
    waiter = threading.Thread(target=injector.hold, args=(plan.hold_seconds,))
    waiter.start()
    deadline = time.monotonic() + 30
    while injector.describe()["held"] != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert injector.describe()["held"] == 1 and waiter.is_alive()
    injector.release_held()
    waiter.join(30)
    assert not waiter.is_alive() and injector.describe()["held"] == 0
    with pytest.raises(FaultConfigError):
        FaultInjector().configure_from_json({"rules": [{"action": "hold"}]})  # a hold needs its longest delay_ms
