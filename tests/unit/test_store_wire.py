"""The store's request signing (ossmount/store/wire.py rule 5): V1 signatures are oss2's own, only the Date header
is made once per second."""

from __future__ import annotations

import contextlib
import email.utils
import time
from typing import Iterator

import oss2
import oss2.utils
from hypothesis import given, settings
from hypothesis import strategies as st

from ossmount.credentials import Credentials
from ossmount.store import wire
from ossmount.store.wire import OssRequest, Signer

@contextlib.contextmanager
def same_date(date: str) -> Iterator[None]:
    """Both signers see the Date `date` (oss2's reads the clock per request, ours per second)."""
    saved = wire.http_date, oss2.utils.http_date
    wire.http_date = oss2.utils.http_date = lambda timeval=None: date
    try:
        yield
    finally:
        wire.http_date, oss2.utils.http_date = saved


_HEADER_VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=12)


@settings(max_examples=200, deadline=None)
@given(method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE"]),
       key=st.text(max_size=20),
       params=st.dictionaries(st.sampled_from(["uploadId", "partNumber", "list-type", "prefix", "versionId", "acl",
                                               "continuation-token", "max-keys", "x-oss-process"]),
                              _HEADER_VALUE, max_size=4),
       headers=st.dictionaries(st.sampled_from(["content-type", "content-md5", "x-oss-meta-mode", "x-oss-meta-b",
                                                "x-oss-range-behavior", "range", "if-match", "user-agent"]),
                               _HEADER_VALUE, max_size=5),
       token=st.sampled_from(["", "sts-token"]))
def test_v1_signatures_are_oss2s_for_the_same_date(method, key, params, headers, token):
    credentials = Credentials("ossmount-id", "ossmount-secret", token or None)
    ours = OssRequest(method, key, params=params, headers=headers)
    theirs = OssRequest(method, key, params=params, headers=headers)
    provider = oss2.credentials.StaticCredentialsProvider("ossmount-id", "ossmount-secret", token)
    with same_date("Mon, 30 Nov 2026 22:00:00 GMT"):
        Signer("bucket-a", sigv4=False, region=None).sign(ours, credentials)
        oss2.ProviderAuth(provider)._sign_request(theirs, "bucket-a", key)
    assert ours.headers == theirs.headers
    assert ours.headers["date"] == "Mon, 30 Nov 2026 22:00:00 GMT"


def test_the_date_is_the_text_oss2_gives_for_the_current_second():
    for _ in range(5):  # a second may turn between the two calls: then the next try is within one second
        before = int(time.time())
        ours, theirs = wire.http_date(), oss2.utils.http_date()
        if int(time.time()) == before:
            assert ours == theirs == email.utils.formatdate(before, usegmt=True)
            return
    raise AssertionError("five seconds turned during five pairs of calls")


def test_the_date_follows_the_clock(monkeypatch):
    monkeypatch.setattr(wire.time, "time", lambda: 1_800_000_000.9)
    first = wire.http_date()
    monkeypatch.setattr(wire.time, "time", lambda: 1_800_000_001.0)
    assert (first, wire.http_date()) == ("Fri, 15 Jan 2027 08:00:00 GMT", "Fri, 15 Jan 2027 08:00:01 GMT")
