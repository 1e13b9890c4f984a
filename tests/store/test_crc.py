"""CRC-64/XZ helpers: the check value, running CRCs, and combining part CRCs."""

import os

import pytest
from hypothesis import given, strategies as st

from ossmount.store.crc import combine_parts, crc64, crc64_combine


def test_check_value_of_the_catalogue():
    # CRC-64/XZ check value for "123456789" (the CRC catalogue entry OSS's crc64ecma corresponds to).
    assert crc64(b"123456789") == 0x995DC9BBDF1939FA


def test_running_crc_equals_whole():
    data = os.urandom(100_000)
    running = crc64(data[:40_000])
    running = crc64(memoryview(data)[40_000:], running)
    assert running == crc64(data)


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_combine_matches_concatenation(first, second):
    assert crc64_combine(crc64(first), crc64(second), len(second)) == crc64(first + second)


@pytest.mark.parametrize("sizes", [[1], [5 * 1024 * 1024, 3], [0, 7, 0, 1 << 16]])
def test_combine_parts(sizes):
    parts = [os.urandom(size) for size in sizes]
    assert combine_parts([(crc64(p), len(p)) for p in parts]) == crc64(b"".join(parts))
