"""Pure tests of the spool's range bookkeeping and the sparse spool file."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from ossmount.fs.spool import RangeSet, SpoolFile, merge_close_ranges, split_range

LIMIT = 200

ranges = st.tuples(st.integers(0, LIMIT), st.integers(0, LIMIT)).map(lambda pair: (min(pair), max(pair)))
operations = st.lists(st.one_of(st.tuples(st.just("add"), ranges), st.tuples(st.just("clip"), st.integers(0, LIMIT))))


def members(range_set: RangeSet) -> set[int]:
    return {offset for start, end in range_set for offset in range(start, end)}


@settings(max_examples=300)
@given(operations, ranges)
def test_range_set_matches_a_set_of_offsets(ops, query):
    range_set, model = RangeSet(), set()
    for name, argument in ops:
        if name == "add":
            range_set.add(*argument)
            model.update(range(*argument))
        else:
            range_set.clip(argument)
            model = {offset for offset in model if offset < argument}
        assert members(range_set) == model
        spans = list(range_set)
        assert all(start < end for start, end in spans)
        # disjoint and never touching: touching ranges are merged
        assert all(left[1] < right[0] for left, right in zip(spans, spans[1:]))
    start, end = query
    gaps = range_set.gaps(start, end)
    assert {offset for gap_start, gap_end in gaps for offset in range(gap_start, gap_end)} == set(range(start, end)) - model
    assert all(gap_start < gap_end for gap_start, gap_end in gaps)
    assert range_set.covers(start, end) == (not gaps)
    assert range_set.intersects(start, end) == bool(model & set(range(start, end)))


def test_gaps_examples():
    range_set = RangeSet()
    range_set.add(10, 20)
    range_set.add(30, 40)
    range_set.add(20, 25)  # touching merges
    assert list(range_set) == [(10, 25), (30, 40)]
    assert range_set.gaps(0, 50) == [(0, 10), (25, 30), (40, 50)]
    assert range_set.gaps(12, 24) == []
    assert range_set.gaps(24, 31) == [(25, 30)]
    range_set.clip(35)
    assert list(range_set) == [(10, 25), (30, 35)]


@given(st.integers(0, 100), st.integers(0, 100), st.integers(1, 30))
def test_split_range_covers_in_bounded_pieces(start, length, chunk):
    pieces = split_range(start, start + length, chunk)
    covered = [offset for piece_start, piece_end in pieces for offset in range(piece_start, piece_end)]
    assert covered == list(range(start, start + length))
    assert all(0 < piece_end - piece_start <= chunk for piece_start, piece_end in pieces)


def test_spool_file_is_sparse_unlinked_and_sized(tmp_path):
    spool = SpoolFile(str(tmp_path), 10 * 1024 * 1024)
    try:
        assert os.listdir(tmp_path) == []  # unlinked at once: nothing to clean up after a crash
        assert os.fstat(spool.fd).st_size == 10 * 1024 * 1024
        assert os.fstat(spool.fd).st_blocks * 512 < 1024 * 1024  # holes take no space
        spool.pwrite(5, b"abc")
        assert spool.pread(0, 10) == b"\0" * 5 + b"abc\0\0"
        spool.resize(6)
        assert spool.pread(0, 100) == b"\0" * 5 + b"a"
        reader = spool.open_reader()
        try:
            assert reader.read() == b"\0" * 5 + b"a"
        finally:
            reader.close()
        assert spool.pread(3, 2) == b"\0\0"  # the reader's offset does not disturb pread
    finally:
        spool.close()
    assert spool.closed


@given(st.lists(ranges), st.integers(0, 50), st.integers(1, 60))
def test_merged_spans_cover_every_gap_within_the_limit(added, distance, limit):
    range_set = RangeSet()
    for start, end in added:
        range_set.add(start, end)
    gaps = range_set.gaps(0, LIMIT)
    spans = merge_close_ranges(gaps, distance, limit)
    covered = {offset for start, end in spans for offset in range(start, end)}
    assert {offset for start, end in gaps for offset in range(start, end)} <= covered
    assert all(0 < end - start <= limit for start, end in spans)
    assert all(left[1] <= right[0] for left, right in zip(spans, spans[1:]))
    assert len(spans) <= sum(-(-(end - start) // limit) for start, end in gaps)
