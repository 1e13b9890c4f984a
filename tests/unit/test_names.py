"""ossmount.fs.names: which keys of a listing become which entries (sans-IO)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ossmount.fs.names import NAME_MAX, REASON_DOT, REASON_EMPTY, REASON_NUL, REASON_TOO_LONG, split_listing, \
    unshowable_reason


@pytest.mark.parametrize("name, reason", [
    ("a", None), ("...", None), (".hidden", None), ("a b", None), ("é" * 127, None),
    (".", REASON_DOT), ("..", REASON_DOT), ("", REASON_EMPTY), ("a\0b", REASON_NUL),
    ("x" * NAME_MAX, None), ("x" * (NAME_MAX + 1), REASON_TOO_LONG), ("é" * 128, REASON_TOO_LONG),
])
def test_unshowable_reason(name, reason):
    assert unshowable_reason(name) == reason


def listing(prefix, keys, prefixes=()):
    return split_listing(prefix, [(key, key) for key in keys], list(prefixes))


def test_the_issue_examples():
    """`d/.`, `d/..`, `d/./x`, `d/a/../x`, `d/a//b`, `d//`: never a '.'/'..' entry, never a duplicate."""
    result = listing("d/", ["d/", "d/.", "d/..", "d/ok"], ["d/./", "d//", "d/a/"])
    assert result.files == {"ok": "d/ok"}
    assert result.dirs == {"a"}
    assert sorted(result.hidden) == sorted([("d/.", REASON_DOT), ("d/..", REASON_DOT), ("d/./", REASON_DOT),
                                            ("d//", REASON_EMPTY)])
    inner = listing("d/a/", [], ["d/a/../", "d/a//"])
    assert inner.names == set() and {key for key, _ in inner.hidden} == {"d/a/../", "d/a//"}


def test_a_file_shadows_the_directory_of_the_same_name():
    """ossfs HEADs `foo` first: the file is shown, the keys under `foo/` are hidden until it goes."""
    result = listing("p/", ["p/foo", "p/bar"], ["p/foo/", "p/baz/"])
    assert result.files == {"foo": "p/foo", "bar": "p/bar"} and result.dirs == {"baz"}
    [(key, reason)] = result.hidden
    assert key == "p/foo/" and "'p/foo'" in reason and "shown instead" in reason


def test_the_directory_marker_is_not_an_entry_and_the_root_works():
    assert listing("d/", ["d/"]).names == set() and listing("d/", ["d/"]).hidden == []
    root = listing("", ["x", ".", "y/z"], ["w/", "/"])
    assert root.files == {"x": "x"} and root.dirs == {"w", "y"}
    assert {key for key, _ in root.hidden} == {".", "/"}


names = st.text(alphabet="ab./", max_size=6)


@given(st.lists(names, max_size=12), st.lists(names, max_size=6))
def test_entries_are_unique_showable_and_everything_is_accounted_for(object_names, prefix_names):
    """Property: no '.'/'..'/empty name, no name twice, and every listed key is an entry, the marker, or hidden."""
    prefix = "d/"
    objects = sorted({prefix + name for name in object_names})
    prefixes = sorted({prefix + name.partition("/")[0] + "/" for name in prefix_names})
    result = listing(prefix, objects, prefixes)
    assert not (set(result.files) & result.dirs)
    for name in result.names:
        assert unshowable_reason(name) is None and "/" not in name
    hidden = {key for key, _ in result.hidden}
    for key in objects:
        rest = key[len(prefix):]
        first, slash, _ = rest.partition("/")
        assert key == prefix or (first in result.files if not slash else first in result.dirs) \
            or key in hidden or prefix + first + "/" in hidden
    for key in prefixes:
        assert key[len(prefix):-1] in result.dirs or key in hidden
