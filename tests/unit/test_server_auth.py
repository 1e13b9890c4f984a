"""Signature verification against oss2's own signers as the oracle.

Every accepted request here is signed by oss2 2.19.1 (Auth, AuthV2, AuthV4, StsAuth, Bucket.sign_url), then turned
into the server's Request exactly as it would cross the wire: requests' query encoding, http.client's latin-1 header
encoding and the HTTP front's UTF-8-else-latin-1 decoding. No network is needed.
"""

from __future__ import annotations

import base64
import time
import urllib.parse

import oss2
import oss2.http
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ossmount.errors import ConfigError
from ossmount.server.core.auth import (
    Credential,
    CredentialStore,
    Principal,
    authenticate,
    parse_query,
)
from ossmount.server.core.errors import OssError
from ossmount.server.core.model import Request

REGION = "cn-hangzhou"
ENDPOINT = "http://127.0.0.1:9000"
BUCKET = "auth-bucket"
AK, SK = "test-ak", "test-secret"
OTHER_AK, OTHER_SK = "other-ak", "other-secret"
STS_AK, STS_SK, STS_TOKEN = "STS.temp-ak", "temp-secret", "temp-token/with+odd=chars"

STORE = CredentialStore(
    [
        Credential(AK, SK),
        Credential(OTHER_AK, OTHER_SK),
        Credential(STS_AK, STS_SK, STS_TOKEN),
    ]
)


def wire_header_value(value: str | bytes) -> str:
    """What the server sees for a header value oss2 passed to requests."""
    raw = value if isinstance(value, bytes) else value.encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def wire_headers(headers) -> dict[str, str]:
    return {name.lower(): wire_header_value(value) for name, value in headers.items() if value is not None}


def make_auth(version: str, ak: str = AK, sk: str = SK, token: str | None = None):
    if token is not None:
        return oss2.StsAuth(ak, sk, token, auth_version=version)
    return {"v1": oss2.Auth, "v2": oss2.AuthV2, "v4": oss2.AuthV4}[version](ak, sk)


def signed_request(
    version: str,
    method: str,
    bucket: str,
    key: str,
    *,
    params: dict | None = None,
    headers: dict | None = None,
    auth=None,
    region: str = REGION,
    additional_headers=None,
) -> tuple[Request, oss2.http.Request]:
    """Sign with oss2 the way Bucket/Service do and return what the server would receive."""
    auth = auth or make_auth(version)
    url = oss2.api._UrlMaker(ENDPOINT, False, False)(bucket, key)
    oss_req = oss2.http.Request(method, url, params=dict(params or {}), headers=dict(headers or {}), region=region,
                                product="oss")
    if additional_headers is None:
        auth._sign_request(oss_req, bucket, key)
    else:
        auth._sign_request(oss_req, bucket, key, in_additional_headers=additional_headers)
    prepared = requests.Request(method, oss_req.url, params=oss_req.params).prepare()
    return Request(method, prepared.path_url, wire_headers(oss_req.headers)), oss_req


def presigned_request(
    version: str,
    method: str,
    key: str,
    expires: int,
    *,
    headers: dict | None = None,
    params: dict | None = None,
    auth=None,
    region: str = REGION,
    additional_headers=None,
) -> Request:
    """A request for a URL from oss2's Bucket.sign_url, sending the headers that were signed."""
    bucket = oss2.Bucket(auth or make_auth(version), ENDPOINT, BUCKET, region=region)
    url = bucket.sign_url(method, key, expires, headers=dict(headers or {}), params=params,
                          additional_headers=additional_headers)
    parts = urllib.parse.urlsplit(url)
    return Request(method, f"{parts.path}?{parts.query}", wire_headers(headers or {}))


def verify(request: Request, *, bucket=BUCKET, key: str | None = None, now: float | None = None,
           region: str = REGION, allow_anonymous: bool = False, max_skew: float = 900.0):
    return authenticate(
        request,
        bucket=bucket,
        key=key,
        credentials=STORE,
        region=region,
        now=time.time() if now is None else now,
        allow_anonymous=allow_anonymous,
        max_skew=max_skew,
    )


def refused(request: Request, **kwargs) -> OssError:
    with pytest.raises(OssError) as info:
        verify(request, **kwargs)
    return info.value


def extra(error: OssError) -> dict[str, str]:
    return dict(error.extra)


# --------------------------------------------------------------------------------------------------
# Accepted: oss2's own signatures

ACCEPTED_CASES = [
    # (id, method, bucket, key, params, headers)
    ("get-object", "GET", BUCKET, "dir/file.txt", {}, {}),
    ("put-with-md5-type-meta", "PUT", BUCKET, "a b/c+d.bin", {},
     {"Content-Type": "text/plain", "Content-MD5": "1B2M2Y8AsgTpgAEq7KlXPw==", "x-oss-meta-Owner": "Me",
      "x-oss-forbid-overwrite": "true", "x-oss-storage-class": "Archive"}),
    ("ranged-get", "GET", BUCKET, "k", {}, {"Range": "bytes=0-99", "x-oss-range-behavior": "standard"}),
    ("list-v1", "GET", BUCKET, "", {"prefix": "a dir/", "delimiter": "/", "marker": "", "max-keys": "100",
                                    "encoding-type": "url"}, {}),
    ("list-v2-first-page", "GET", BUCKET, "", {"list-type": "2", "continuation-token": "", "prefix": "p+q",
                                               "start-after": "x", "max-keys": "10", "encoding-type": "url"}, {}),
    ("list-v2-next-page", "GET", BUCKET, "", {"list-type": "2", "continuation-token": "tok/en+=="}, {}),
    ("list-buckets", "GET", "", "", {"prefix": "", "marker": "", "max-keys": "100"}, {}),
    ("bucket-info", "GET", BUCKET, "", {"bucketInfo": ""}, {}),
    ("initiate-multipart", "POST", BUCKET, "big", {"uploads": ""}, {"Content-Type": "application/octet-stream"}),
    ("upload-part", "PUT", BUCKET, "big", {"partNumber": "3", "uploadId": "0004B9894A22E5B1888A1E29F823"}, {}),
    ("upload-part-copy", "PUT", BUCKET, "big", {"partNumber": "1", "uploadId": "u"},
     {"x-oss-copy-source": "/auth-bucket/src%20key", "x-oss-copy-source-range": "bytes=0-9"}),
    ("append", "POST", BUCKET, "log", {"append": "", "position": "42"}, {}),
    ("delete-multiple", "POST", BUCKET, "", {"delete": "", "encoding-type": "url"},
     {"Content-MD5": "XrY7u+Ae7tCTyyK7j1rNww==", "Content-Type": "application/xml"}),
    ("get-meta", "HEAD", BUCKET, "k", {"objectMeta": ""}, {}),
    ("response-overrides", "GET", BUCKET, "k", {"response-content-type": "text/html; charset=utf-8",
                                                "response-content-disposition": "attachment; filename=\"a b\""}, {}),
    ("symlink", "PUT", BUCKET, "link", {"symlink": ""}, {"x-oss-symlink-target": "target%20key"}),
    ("version-id", "GET", BUCKET, "k", {"versionId": "CAEQ+/="}, {}),
    ("unicode-key", "GET", BUCKET, "中文/ファイル ü?#%&=.txt", {}, {}),
    ("utf8-bytes-meta", "PUT", BUCKET, "k", {}, {"x-oss-meta-unicode": "测试".encode()}),
    ("utf8-bytes-meta-latin-range", "PUT", BUCKET, "k", {}, {"x-oss-meta-a": "café".encode()}),
    ("latin1-str-meta", "PUT", BUCKET, "k", {}, {"x-oss-meta-a": "café"}),
    ("question-mark-key", "PUT", BUCKET, "?weird", {}, {}),
    ("restore", "POST", BUCKET, "cold", {"restore": ""}, {"Content-Type": "application/xml"}),
]


@pytest.mark.parametrize("version", ["v1", "v2", "v4"])
@pytest.mark.parametrize("case", ACCEPTED_CASES, ids=[case[0] for case in ACCEPTED_CASES])
def test_oss2_header_signatures_are_accepted(version, case):
    _, method, bucket, key, params, headers = case
    request, _ = signed_request(version, method, bucket, key, params=params, headers=headers)
    assert verify(request, bucket=bucket or None, key=key or None) == Principal(AK, AK)


@pytest.mark.parametrize("version", ["v2", "v4"])
def test_additional_headers_are_signed_and_checked(version):
    headers = {"Range": "bytes=1-3", "custom-header": "abc", "x-oss-forbid-overwrite": "true"}
    additional = {"range", "custom-header", "noexist-header", "x-oss-forbid-overwrite"}
    request, oss_req = signed_request(version, "GET", BUCKET, "k", headers=headers, additional_headers=additional)
    assert "ditionalHeaders" in oss_req.headers["authorization"]
    assert verify(request, key="k") == Principal(AK, AK)
    tampered = Request(request.method, request.target, {**request.headers, "custom-header": "abd"})
    assert refused(tampered, key="k").code == "SignatureDoesNotMatch"


def test_v4_photon_authorization_layout_is_accepted():
    """ossfs2/Photon: no space after the commas and AdditionalHeaders before Signature."""
    request, _ = signed_request("v4", "GET", BUCKET, "k", headers={"custom": "1"}, additional_headers={"custom"})
    fields = dict(
        part.strip().split("=", 1) for part in request.headers["authorization"][len("OSS4-HMAC-SHA256 "):].split(",")
    )
    photon = (f"OSS4-HMAC-SHA256 Credential={fields['Credential']},AdditionalHeaders={fields['AdditionalHeaders']},"
              f"Signature={fields['Signature']}")
    request.headers["authorization"] = photon
    assert verify(request, key="k") == Principal(AK, AK)


def test_v1_ignores_parameters_outside_the_subresource_set_but_v4_signs_every_parameter():
    for version, expect_ok in (("v1", True), ("v4", False)):
        request, _ = signed_request(version, "GET", BUCKET, "", params={"prefix": "a"})
        request.target += "&max-keys=5"
        if expect_ok:
            assert verify(request) == Principal(AK, AK)
        else:
            assert refused(request).code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("version", ["v1", "v2", "v4"])
def test_sts_triple_is_accepted_with_its_token(version):
    auth = make_auth(version, STS_AK, STS_SK, STS_TOKEN)
    request, _ = signed_request(version, "PUT", BUCKET, "k", auth=auth)
    assert request.headers["x-oss-security-token"] == STS_TOKEN
    assert verify(request, key="k") == Principal(STS_AK, STS_AK)


@pytest.mark.parametrize("version", ["v1", "v2", "v4"])
def test_presigned_urls_are_accepted(version):
    request = presigned_request(version, "GET", "dir/a b+c.txt", 300, params={"response-content-type": "text/plain"})
    assert verify(request, key="dir/a b+c.txt") == Principal(AK, AK)


@pytest.mark.parametrize("version", ["v1", "v2", "v4"])
def test_presigned_put_signs_its_headers(version):
    headers = {"Content-Type": "image/jpeg", "x-oss-meta-a": "1"}
    request = presigned_request(version, "PUT", "photo.jpg", 300, headers=headers)
    assert verify(request, key="photo.jpg") == Principal(AK, AK)
    # oss2 test_put_object_with_sign_url: a URL signed without Content-Type refuses a request that has one.
    unsigned = presigned_request(version, "PUT", "photo.jpg", 300)
    with_type = Request("PUT", unsigned.target, {"content-type": "image/jpeg"})
    assert refused(with_type, key="photo.jpg").code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("version", ["v2", "v4"])
def test_presigned_additional_headers(version):
    headers = {"Content-Length": "9", "custom-header": "abc"}
    request = presigned_request(version, "PUT", "k", 604800, headers=headers,
                                additional_headers={"Content-Length", "custom-header"})
    assert "x-oss-additional-headers=" in request.target
    assert verify(request, key="k") == Principal(AK, AK)
    request.headers["custom-header"] = "abd"
    assert refused(request, key="k").code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("version", ["v1", "v2", "v4"])
def test_presigned_sts_urls_carry_the_token(version):
    auth = make_auth(version, STS_AK, STS_SK, STS_TOKEN)
    request = presigned_request(version, "GET", "k", 300, auth=auth)
    assert "security-token=" in request.target
    assert verify(request, key="k") == Principal(STS_AK, STS_AK)


def test_v1_x_oss_date_takes_precedence_over_date():
    request, _ = signed_request("v1", "GET", BUCKET, "k", headers={"x-oss-date": oss2.utils.http_date()})
    request.headers["date"] = "garbage"
    assert verify(request, key="k") == Principal(AK, AK)


def test_anonymous_requests():
    request = Request("GET", f"/{BUCKET}/k", {})
    assert verify(request, key="k", allow_anonymous=True) is None
    error = refused(request, key="k")
    assert (error.status, error.code) == (403, "AccessDenied")


# --------------------------------------------------------------------------------------------------
# Refused


@pytest.mark.parametrize("version,ec", [("v1", "0002-00000040"), ("v2", "0002-00000040"), ("v4", "0002-00000201")])
def test_wrong_secret_is_signature_does_not_match_with_string_to_sign_echoed(version, ec):
    auth = make_auth(version, AK, "not-the-secret")
    request, oss_req = signed_request(version, "PUT", BUCKET, "k", params={"acl": ""},
                                      headers={"x-oss-meta-x": "y", "Content-Type": "text/plain"}, auth=auth)
    error = refused(request, key="k")
    assert (error.status, error.code, error.ec) == (403, "SignatureDoesNotMatch", ec)
    details = extra(error)
    assert details["OSSAccessKeyId"] == AK
    if version == "v1":
        assert details["SignatureProvided"] == oss_req.headers["authorization"].split(":")[1]
        expected = auth._ProviderAuth__get_bytes_to_sign(oss_req, BUCKET, "k")
        assert details["StringToSign"] == expected.decode()
        assert details["StringToSignBytes"].split() == [f"{b:02X}" for b in expected]
    if version == "v4":
        assert details["CanonicalRequest"].startswith("PUT\n/auth-bucket/k\nacl\n")
        assert details["StringToSign"].startswith("OSS4-HMAC-SHA256\n")


@pytest.mark.parametrize("version", ["v1", "v2", "v4"])
def test_unknown_access_key_id(version):
    request, _ = signed_request(version, "GET", BUCKET, "k", auth=make_auth(version, "nobody", SK))
    error = refused(request, key="k")
    assert (error.status, error.code) == (403, "InvalidAccessKeyId")
    assert extra(error)["OSSAccessKeyId"] == "nobody"


@pytest.mark.parametrize("version", ["v1", "v2", "v4"])
@pytest.mark.parametrize("offset", [+3600, -3600])
def test_clock_skew_is_refused(version, offset):
    request, _ = signed_request(version, "GET", BUCKET, "k")
    error = refused(request, key="k", now=time.time() + offset)
    assert (error.status, error.code, error.ec) == (403, "RequestTimeTooSkewed", "0002-00000504")
    assert error.message == "The difference between the request time and the current time is too large."
    assert verify(request, key="k", now=time.time() + offset, max_skew=2 * 3600) == Principal(AK, AK)


def test_v1_x_oss_date_skew_matches_oss2_test_sign():
    headers = {"x-oss-date": oss2.utils.http_date(int(time.time()) + 24 * 60 * 60)}
    request, _ = signed_request("v1", "GET", BUCKET, "", params={"prefix": "oss"}, headers=headers)
    assert refused(request).code == "RequestTimeTooSkewed"


@pytest.mark.parametrize("date", [None, "not a date"])
def test_missing_or_bad_date_is_access_denied(date):
    request, _ = signed_request("v1", "GET", BUCKET, "k")
    del request.headers["date"]
    if date is not None:
        request.headers["date"] = date
    error = refused(request, key="k")
    assert (error.status, error.code) == (403, "AccessDenied")


def test_v4_missing_x_oss_date_is_access_denied():
    request, _ = signed_request("v4", "GET", BUCKET, "k")
    del request.headers["x-oss-date"]
    assert refused(request, key="k").code == "AccessDenied"


@pytest.mark.parametrize("version", ["v1", "v2", "v4"])
def test_expired_presigned_url(version):
    request = presigned_request(version, "GET", "k", 60)
    assert verify(request, key="k", now=time.time() + 30) == Principal(AK, AK)
    error = refused(request, key="k", now=time.time() + 120)
    assert (error.status, error.code, error.message) == (403, "AccessDenied", "Request has expired.")
    assert {"Expires", "ServerTime"} <= set(extra(error))


def test_v4_presigned_lifetime_is_at_most_seven_days():
    request = presigned_request("v4", "GET", "k", 7 * 24 * 3600 + 1)
    error = refused(request, key="k")
    assert (error.status, error.code) == (400, "InvalidArgument")


@pytest.mark.parametrize("version", ["v1", "v4"])
def test_presigned_url_for_another_key_is_refused(version):
    request = presigned_request(version, "GET", "k", 60)
    assert refused(request, key="other").code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("version", ["v1", "v2", "v4"])
def test_wrong_sts_token_is_invalid_security_token(version):
    request, _ = signed_request(version, "GET", BUCKET, "k", auth=make_auth(version, STS_AK, STS_SK, "wrong"))
    error = refused(request, key="k")
    assert (error.status, error.code) == (403, "InvalidSecurityToken")


@pytest.mark.parametrize("version", ["v1", "v2", "v4"])
def test_temporary_key_without_token_is_invalid_security_token(version):
    request, _ = signed_request(version, "GET", BUCKET, "k", auth=make_auth(version, STS_AK, STS_SK))
    assert refused(request, key="k").code == "InvalidSecurityToken"


def test_wrong_sts_token_in_presigned_url():
    request = presigned_request("v1", "GET", "k", 60, auth=make_auth("v1", STS_AK, STS_SK, "wrong"))
    assert refused(request, key="k").code == "InvalidSecurityToken"


def test_v4_wrong_region_is_invalid_argument():
    """oss2 tests/test_exception_ec.py: region cn-hangzhou-test-1 against a cn-hangzhou endpoint."""
    request, _ = signed_request("v4", "GET", BUCKET, "k", region="cn-hangzhou-test-1")
    error = refused(request, key="k")
    assert (error.status, error.code, error.ec) == (400, "InvalidArgument", "0002-00000226")
    assert error.message == "Invalid signing region in Authorization header."


def test_v4_presigned_wrong_region_matches_oss2_test_sign_message():
    request = presigned_request("v4", "PUT", "k", 3600, region="eu-west-1")
    error = refused(request, key="k")
    assert (error.status, error.code) == (400, "InvalidArgument")
    assert error.message == "The signing region in credential is invalid."


@pytest.mark.parametrize("version", ["v1", "v2", "v4"])
@pytest.mark.parametrize("tamper", ["method", "meta-header", "subresource", "key"])
def test_tampered_requests_are_refused(version, tamper):
    request, _ = signed_request(version, "PUT", BUCKET, "k", params={"partNumber": "1", "uploadId": "u"},
                                headers={"x-oss-meta-a": "1"})
    key = "k"
    if tamper == "method":
        request.method = "DELETE"
    elif tamper == "meta-header":
        request.headers["x-oss-meta-a"] = "2"
    elif tamper == "subresource":
        request.target = request.target.replace("partNumber=1", "partNumber=2")
    else:
        key = "k2"
    assert refused(request, key=key).code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("authorization", ["Bearer abc", "OSS nocolon", "OSS4-HMAC-SHA256 Signature=abc",
                                           "OSS4-HMAC-SHA256 Credential=ak/20240101/cn-hangzhou, Signature=ab"])
def test_malformed_authorization_is_invalid_argument(authorization):
    request = Request("GET", f"/{BUCKET}/k", {"authorization": authorization, "date": oss2.utils.http_date()})
    error = refused(request, key="k")
    assert (error.status, error.code) == (400, "InvalidArgument")


# --------------------------------------------------------------------------------------------------
# Property: whatever oss2 signs, we verify

_key_alphabet = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_keys = st.text(_key_alphabet, min_size=1, max_size=40) | st.text("/?%+ &=#abc中", min_size=1, max_size=12)
_subresources = st.dictionaries(
    st.sampled_from(["acl", "uploads", "uploadId", "partNumber", "append", "position", "versionId", "symlink",
                     "response-content-type", "continuation-token", "prefix", "marker", "x-oss-process",
                     "tagging", "objectMeta"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    max_size=4,
)
_meta_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.sampled_from(["v1", "v2", "v4"]),
    method=st.sampled_from(["GET", "PUT", "POST", "HEAD", "DELETE"]),
    key=_keys,
    params=_subresources,
    meta=st.dictionaries(st.sampled_from(["x-oss-meta-a", "x-oss-meta-b-c", "x-oss-tagging"]), _meta_values,
                         max_size=2),
)
def test_property_oss2_signatures_verify(version, method, key, params, meta):
    request, _ = signed_request(version, method, BUCKET, key, params=params, headers=meta)
    assert verify(request, key=key) == Principal(AK, AK)
    request.headers["x-oss-meta-injected"] = "1"
    assert refused(request, key=key).code == "SignatureDoesNotMatch"


@settings(max_examples=60, deadline=None)
@given(version=st.sampled_from(["v1", "v2", "v4"]), key=_keys, params=_subresources)
def test_property_presigned_urls_verify(version, key, params):
    if not key.strip():
        return  # oss2's sign_url refuses blank keys itself
    bucket = oss2.Bucket(make_auth(version), ENDPOINT, BUCKET, region=REGION, is_verify_object_strict=False)
    url = bucket.sign_url("GET", key, 300, params=dict(params))
    parts = urllib.parse.urlsplit(url)
    request = Request("GET", f"{parts.path}?{parts.query}", {})
    assert verify(request, key=key) == Principal(AK, AK)


# --------------------------------------------------------------------------------------------------
# Query parsing and the credentials file


def test_parse_query_decodes_once_and_treats_plus_as_space():
    assert parse_query("/b/k?uploads&a=&prefix=a+b%2Bc%252F&x=%E4%B8%AD") == [
        ("uploads", ""), ("a", ""), ("prefix", "a b+c%2F"), ("x", "中"),
    ]
    assert parse_query("/b/k") == []


def test_credentials_file(tmp_path):
    path = tmp_path / "creds"
    path.write_text("# comment\n\nak1:sk1\n  ak2 : sk2 : token2  \n")
    store = CredentialStore.from_file(str(path))
    assert store.first() == Credential("ak1", "sk1", None)
    assert store.lookup("ak2") == Credential("ak2", "sk2", "token2")
    assert store.lookup("ak3") is None
    assert len(store) == 2


@pytest.mark.parametrize("content,fragment", [
    ("ak1:sk1\nbroken-line\n", ":2:"),
    ("ak1:sk1:t:extra\n", ":1:"),
    ("ak1:\n", ":1:"),
    ("ak1:sk1\nak1:sk2\n", "duplicate"),
    ("# only a comment\n", "no credentials"),
])
def test_bad_credentials_file_is_a_config_error(tmp_path, content, fragment):
    path = tmp_path / "creds"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        CredentialStore.from_file(str(path))
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_missing_credentials_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read credentials file"):
        CredentialStore.from_file(str(tmp_path / "absent"))


def test_signature_provided_is_compared_exactly():
    request, _ = signed_request("v1", "GET", BUCKET, "k")
    ak, signature = request.headers["authorization"][4:].split(":")
    flipped = base64.b64encode(bytes([base64.b64decode(signature)[0] ^ 1]) + base64.b64decode(signature)[1:])
    request.headers["authorization"] = f"OSS {ak}:{flipped.decode()}"
    assert refused(request, key="k").code == "SignatureDoesNotMatch"


def test_long_term_key_presenting_a_security_token_is_refused():
    request, _ = signed_request("v1", "GET", BUCKET, "k", auth=make_auth("v1", AK, SK, "unexpected-token"))
    assert refused(request, key="k").code == "InvalidSecurityToken"


@settings(max_examples=300, deadline=None)
@given(
    authorization=st.one_of(
        st.text(max_size=60),
        st.builds(lambda rest: "OSS " + rest, st.text(max_size=40)),
        st.builds(lambda rest: "OSS2 " + rest, st.text(max_size=40)),
        st.builds(lambda rest: "OSS4-HMAC-SHA256 " + rest, st.text(max_size=80)),
        st.builds(lambda ak, date, region: f"OSS4-HMAC-SHA256 Credential={ak}/{date}/{region}/oss/aliyun_v4_request,"
                                           f"Signature=00", st.text(max_size=8), st.text(max_size=10),
                  st.sampled_from([REGION, "x"])),
    ),
    date=st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["Tue, 01 Jan 99999 00:00:00 GMT",
                                                                      "20240101T000000Z", "99991231T235959Z"])),
    query=st.one_of(st.text(max_size=60), st.sampled_from([
        "OSSAccessKeyId=test-ak&Expires=abc&Signature=x",
        "OSSAccessKeyId=test-ak&Expires=99999999999999999999999&Signature=x",
        "OSSAccessKeyId=test-ak&Expires=-99999999999999999999999&Signature=x",
        "x-oss-signature-version=OSS2&x-oss-access-key-id=test-ak&x-oss-expires=-9999999999999999999"
        "&x-oss-signature=a",
        "x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-credential=a%2Fb&x-oss-date=1&x-oss-expires=1"
        "&x-oss-signature=1",
        "x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-credential=test-ak%2F20240101%2Fcn-hangzhou%2Foss%2F"
        "aliyun_v4_request&x-oss-date=20240101T000000Z&x-oss-expires=1e3&x-oss-signature=1",
        "x-oss-signature-version=OSS2&x-oss-access-key-id=test-ak&x-oss-expires=1e9&x-oss-signature=a",
        "x-oss-signature-version=OSS3",
    ])),
)
def test_property_garbage_is_refused_with_an_oss_error(authorization, date, query):
    headers = {"authorization": authorization} if authorization else {}
    if date is not None:
        headers["date"] = date
        headers["x-oss-date"] = date
    request = Request("GET", f"/{BUCKET}/k?{query}", headers)
    try:
        verify(request, key="k")
    except OssError as error:
        assert error.status in (400, 403)
