"""CRC-64/XZ values, running CRCs, and the GF(2) combine that stitches parts/extents without re-reading data."""

import os
import time

import pytest
from hypothesis import given, strategies as st

from ossmount.crc64 import crc64, crc64_combine, crc64_concat, crc64_file


def test_check_values_from_the_spec():
    # CRC-64/XZ check value for "123456789" (the CRC catalogue entry OSS's crc64ecma corresponds to).
    assert crc64(b"123456789") == 0x995DC9BBDF1939FA == 11051210869376104954
    assert crc64(b"") == 0
    assert crc64(b"hello world") == 5981764153023615706


def test_streaming_matches_one_shot():
    assert crc64(b"6789", crc64(b"12345")) == crc64(b"123456789")


def test_running_crc_over_a_memoryview_equals_whole():
    data = os.urandom(100_000)
    running = crc64(data[:40_000])
    running = crc64(memoryview(data)[40_000:], running)
    assert running == crc64(data)


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_combine_equals_crc_of_concatenation(first, second):
    assert crc64_combine(crc64(first), crc64(second), len(second)) == crc64(first + second)


def test_concat_of_many_pieces_including_empty():
    pieces = [os.urandom(n) for n in (0, 1, 1000, 65536, 7)]
    assert crc64_concat([(crc64(p), len(p)) for p in pieces]) == crc64(b"".join(pieces))


@pytest.mark.parametrize("sizes", [[1], [5 * 1024 * 1024, 3], [0, 7, 0, 1 << 16]])
def test_concat_of_parts(sizes):
    parts = [os.urandom(size) for size in sizes]
    assert crc64_concat([(crc64(p), len(p)) for p in parts]) == crc64(b"".join(parts))


def test_combine_with_large_length_is_fast_and_consistent():
    started = time.monotonic()
    for _ in range(200):
        crc64_combine(12345, 67890, 5 * 1024**3)
    assert time.monotonic() - started < 1.0
    # x^(8n) multiplication: combining zero-filled data equals the CRC of zeros appended.
    zeros = bytes(4096)
    assert crc64_combine(crc64(b"abc"), crc64(zeros), len(zeros)) == crc64(b"abc" + zeros)


@pytest.mark.parametrize("offset, length", [(0, None), (10, 100), (4000, 5000), (9999, 1)])
def test_crc_of_file_ranges(tmp_path, offset, length):
    data = os.urandom(10000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    end = None if length is None else offset + length
    assert crc64_file(str(path), offset, length, chunk_size=1024) == crc64(data[offset:end])
