"""Canned ACLs enforced for unsigned requests as a plain HTTP client (curl, a browser) sends them: public-read
objects and buckets are readable without a signature, public-read-write ones writable, private ones refused with
AccessDenied; an object's own ACL overrides its bucket's and `default` hands the decision back to the bucket.
(oss2's AnonymousAuth over the same rules: tests/server/test_write_options.py.)"""

from __future__ import annotations

import base64
import uuid
import xml.etree.ElementTree as ET

import oss2
import pytest
import requests


@pytest.fixture
def owned(local_server):
    """A new private bucket of the server's first key, and unsigned HTTP on it."""
    bucket = local_server.oss2_bucket(f"acl-{uuid.uuid4().hex[:12]}")
    bucket.create_bucket()
    return bucket


def url(server, bucket: oss2.Bucket, key: str = "") -> str:
    return f"{server.endpoint}/{bucket.bucket_name}/{key}"


def error_code(response: requests.Response) -> str | None:
    """The OSS error code of a response: from the XML body, or for HEAD from the base64 x-oss-err header."""
    document = response.content or base64.b64decode(response.headers.get("x-oss-err", ""))
    if not document:
        return None
    return ET.fromstring(document).findtext("Code")


def refused(response: requests.Response) -> bool:
    return response.status_code == 403 and error_code(response) == "AccessDenied"


def test_private_bucket_refuses_every_unsigned_request(local_server, owned):
    owned.put_object("secret", b"owner only")
    for response in (requests.get(url(local_server, owned, "secret"), timeout=30),
                     requests.head(url(local_server, owned, "secret"), timeout=30),
                     requests.put(url(local_server, owned, "new"), data=b"x", timeout=30),
                     requests.delete(url(local_server, owned, "secret"), timeout=30),
                     requests.get(url(local_server, owned), timeout=30)):
        assert refused(response), (response.request.method, response.status_code, response.content)
    assert owned.get_object("secret").read() == b"owner only"
    assert not owned.object_exists("new")


def test_public_read_bucket_is_readable_not_writable(local_server, owned):
    owned.put_object("page.html", b"<p>hello</p>", headers={"Content-Type": "text/html"})
    owned.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ)
    got = requests.get(url(local_server, owned, "page.html"), timeout=30)
    assert (got.status_code, got.content, got.headers["Content-Type"]) == (200, b"<p>hello</p>", "text/html")
    head = requests.head(url(local_server, owned, "page.html"), timeout=30)
    assert head.status_code == 200 and head.headers["Content-Length"] == "12"
    ranged = requests.get(url(local_server, owned, "page.html"), headers={"Range": "bytes=3-7"}, timeout=30)
    assert (ranged.status_code, ranged.content) == (206, b"hello")
    listing = requests.get(url(local_server, owned), timeout=30)
    assert listing.status_code == 200 and b"<Key>page.html</Key>" in listing.content
    missing = requests.get(url(local_server, owned, "nothing"), timeout=30)
    assert missing.status_code == 404 and error_code(missing) == "NoSuchKey"
    for response in (requests.put(url(local_server, owned, "defaced"), data=b"x", timeout=30),
                     requests.delete(url(local_server, owned, "page.html"), timeout=30),
                     requests.put(url(local_server, owned) + "?acl", headers={"x-oss-acl": "private"}, timeout=30)):
        assert refused(response), (response.request.method, response.status_code, response.content)
    assert owned.get_bucket_acl().acl == "public-read" and not owned.object_exists("defaced")


def test_public_read_write_bucket_takes_unsigned_writes(local_server, owned):
    owned.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ_WRITE)
    put = requests.put(url(local_server, owned, "dropbox/file"), data=b"from anyone", timeout=30)
    assert put.status_code == 200 and put.headers["ETag"]
    assert owned.get_object("dropbox/file").read() == b"from anyone"
    assert requests.get(url(local_server, owned, "dropbox/file"), timeout=30).content == b"from anyone"
    assert requests.delete(url(local_server, owned, "dropbox/file"), timeout=30).status_code == 204
    assert not owned.object_exists("dropbox/file")
    assert refused(requests.get(url(local_server, owned) + "?acl", timeout=30))  # configuration stays the owner's


def test_object_acl_overrides_the_bucket_acl_and_default_inherits_it(local_server, owned):
    owned.put_object("published", b"public", headers={"x-oss-object-acl": "public-read"})
    owned.put_object("plain", b"inherits")
    assert requests.get(url(local_server, owned, "published"), timeout=30).content == b"public"  # private bucket
    assert refused(requests.get(url(local_server, owned, "plain"), timeout=30))
    assert refused(requests.put(url(local_server, owned, "published"), data=b"x", timeout=30))  # read, not write

    owned.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ)
    owned.put_object_acl("plain", oss2.OBJECT_ACL_PRIVATE)
    assert refused(requests.get(url(local_server, owned, "plain"), timeout=30))  # private object, public bucket
    assert refused(requests.head(url(local_server, owned, "plain"), timeout=30))
    owned.put_object_acl("plain", oss2.OBJECT_ACL_DEFAULT)
    assert requests.get(url(local_server, owned, "plain"), timeout=30).content == b"inherits"

    owned.put_object_acl("plain", oss2.OBJECT_ACL_PUBLIC_READ_WRITE)
    assert requests.put(url(local_server, owned, "plain"), data=b"rewritten", timeout=30).status_code == 200
    assert owned.get_object("plain").read() == b"rewritten"
    assert owned.get_object_acl("plain").acl == "default"  # an unsigned PUT without the header resets it


def test_bucket_changes_apply_to_the_very_next_request(local_server, owned):
    """Bucket rows are cached by the server (store.py): every bucket write must be seen by the next request."""
    owned.put_object("k", b"first")
    assert refused(requests.get(url(local_server, owned, "k"), timeout=30))  # the private row is now cached
    owned.put_bucket_acl(oss2.BUCKET_ACL_PUBLIC_READ)
    assert requests.get(url(local_server, owned, "k"), timeout=30).content == b"first"
    owned.put_bucket_acl(oss2.BUCKET_ACL_PRIVATE)
    assert refused(requests.get(url(local_server, owned, "k"), timeout=30))

    owned.put_bucket_versioning(oss2.models.BucketVersioningConfig(oss2.BUCKET_VERSIONING_ENABLE))
    first = owned.put_object("k", b"second").versionid
    owned.put_object("k", b"third")
    assert first and owned.get_object("k", params={"versionId": first}).read() == b"second"
    assert owned.get_object("k").read() == b"third"

    other = local_server.oss2_bucket(f"acl-{uuid.uuid4().hex[:12]}")
    other.create_bucket()
    other.put_object("k", b"v")
    assert other.get_object("k").read() == b"v"  # its row is now cached
    other.delete_object("k")
    other.delete_bucket()
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        other.get_object("k")
    other.create_bucket(oss2.BUCKET_ACL_PUBLIC_READ)
    with pytest.raises(oss2.exceptions.NoSuchKey):
        other.get_object("k")
    other.put_object("k", b"fresh")
    assert requests.get(url(local_server, other, "k"), timeout=30).content == b"fresh"  # the new bucket's ACL
