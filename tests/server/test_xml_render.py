"""xmlio.render writes documents itself (ElementTree's writer cost ~15 ms per 1000-key listing page): its output must
stay byte for byte what ElementTree writes, for any text a key or a metadata value can hold."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from hypothesis import given, settings, strategies as st

from ossmount.server.core import xmlio
from ossmount.server.core.core import new_request_id

# Markup characters, quotes, whitespace that attributes escape, control characters, non-ASCII and lone surrogates
# (keys are decoded with surrogatepass, so a listing may carry them).
TEXT = st.text(alphabet=st.sampled_from(list("ab <>&\"'\r\n\t\x00\x0c/%é中") + ["\ud800", "\U0001f600"]),
               max_size=8)
TAGS = st.sampled_from(["Key", "Contents", "x-y", "A"])


@st.composite
def trees(draw, depth=0):
    node = ET.Element(draw(TAGS), draw(st.dictionaries(st.sampled_from(["p", "q"]), TEXT, max_size=2)))
    node.text = draw(st.none() | TEXT)
    if depth < 3:
        for child in draw(st.lists(trees(depth=depth + 1), max_size=3)):
            node.append(child)
    return node


def element_tree_document(root: ET.Element) -> bytes:
    return xmlio.XML_DECLARATION + ET.tostring(root, encoding="utf-8", short_empty_elements=True)


@settings(max_examples=400, deadline=None)
@given(trees())
def test_render_writes_what_element_tree_writes(root):
    assert xmlio.render(root) == element_tree_document(root)


@settings(max_examples=200, deadline=None)
@given(trees(), st.lists(st.tuples(TAGS, st.none() | st.booleans() | st.integers() | TEXT), max_size=4))
def test_rendered_fragments_are_the_elements_leaf_builds(root, leaves):
    fragments = [xmlio.leaf_xml(tag, value) for tag, value in leaves]
    expected = ET.Element(root.tag, root.attrib)
    expected.text = root.text
    expected.extend(list(root))
    expected.extend(xmlio.leaf(tag, value) for tag, value in leaves)
    assert xmlio.render(root, fragments) == element_tree_document(expected)


def test_trees_element_tree_must_write_still_render():
    """Namespaced tags (the S3 dialect's documents) go through ElementTree, fragments included."""
    root = ET.Element("{http://s3.amazonaws.com/doc/2006-03-01/}ListBucketResult")
    root.append(xmlio.leaf("Name", "b"))
    expected = ET.fromstring(ET.tostring(root))
    expected.append(xmlio.leaf("Key", "a&b"))
    assert xmlio.render(root, [xmlio.leaf_xml("Key", "a&b")]) == element_tree_document(expected)


def test_request_ids_are_distinct_24_digit_hex():
    ids = [new_request_id() for _ in range(10000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch("[0-9A-F]{24}", request_id) for request_id in ids)


def test_listings_show_each_change_of_an_object(oss_bucket):
    """Listing entries are rendered from records decoded once per stored version (store._listed_record): an
    overwrite, a metadata-only change (CopyObject onto itself) and an append each show in the next listing."""
    import oss2

    def entry(key):
        return next(o for o in oss2.ObjectIteratorV2(oss_bucket, prefix="cached/") if o.key == key)

    oss_bucket.put_object("cached/a", b"one")
    oss_bucket.put_object("cached/same", b"")
    oss_bucket.put_object("cached/twin", b"")  # an identical record: both keys listed, each under its own name
    first = entry("cached/a")
    assert first.size == 3
    assert {o.key for o in oss2.ObjectIteratorV2(oss_bucket, prefix="cached/")} == {
        "cached/a", "cached/same", "cached/twin"}

    oss_bucket.put_object("cached/a", b"longer content")
    second = entry("cached/a")
    assert second.size == len(b"longer content") and second.etag != first.etag

    oss_bucket.copy_object(oss_bucket.bucket_name, "cached/a", "cached/a",
                           headers={"x-oss-metadata-directive": "REPLACE", "x-oss-storage-class": "IA"})
    assert entry("cached/a").storage_class == "IA"

    oss_bucket.append_object("cached/log", 0, b"12")
    assert entry("cached/log").size == 2
    oss_bucket.append_object("cached/log", 2, b"345")
    assert entry("cached/log").size == 5


def test_a_repeated_listing_of_ten_thousand_keys_decodes_no_record_again():
    """The record LRU holds more entries than a 10,000-key directory (plus the benchmark's 5,010-entry tree): listing
    it again decodes nothing (a smaller LRU, cycled in order, would hit nothing at all)."""
    from ossmount.server.core.store import ObjectRecord, _listed_record

    texts = [ObjectRecord(size=i, etag=f"{i:032x}").to_json() for i in range(15_010)]
    for text in texts:
        _listed_record(text)
    before = _listed_record.cache_info()
    records = [_listed_record(text) for text in texts]
    after = _listed_record.cache_info()
    assert after.misses == before.misses and after.hits - before.hits == len(texts)
    assert [record.size for record in records] == list(range(15_010))
