"""The one table from OSS error answers and transport failures to ossmount.store.types errors."""

import socket

import oss2
import oss2.exceptions
import pytest
import requests

from ossmount.store import types
from ossmount.store.client import error_from_oss


def server_error(status, code, message="msg", request_id="req-1"):
    return oss2.exceptions.ServerError(status, {"x-oss-request-id": request_id}, b"",
                                       {"Code": code, "Message": message} if code else {})


@pytest.mark.parametrize("status, code, expected", [
    (404, "NoSuchKey", types.NoSuchKey),
    (404, "NoSuchBucket", types.NoSuchBucket),
    (403, "AccessDenied", types.AccessDenied),
    (403, "InvalidAccessKeyId", types.AccessDenied),
    (403, "SignatureDoesNotMatch", types.AccessDenied),
    (403, "InvalidSecurityToken", types.AccessDenied),
    (403, "RequestTimeTooSkewed", types.AccessDenied),
    (403, "InvalidObjectState", types.InvalidObjectState),
    (409, "FileAlreadyExists", types.AlreadyExists),
    (400, "InvalidArgument", types.InvalidArgument),
    (400, "EntityTooLarge", types.EntityTooLarge),
    (400, "KeyTooLong", types.NameTooLong),
    (503, "QpsLimitExceeded", types.Throttled),
    (503, "ServiceUnavailable", types.Throttled),
    (503, "SlowDown", types.Throttled),
    (503, "", types.Throttled),
    (429, "", types.Throttled),
    (500, "InternalError", types.TransientError),
    (502, "", types.TransientError),
    (404, "", types.NoSuchKey),  # HEAD without x-oss-err: no body, no code
    (403, "", types.AccessDenied),
    (409, "BucketNotEmpty", types.StoreError),
])
def test_oss_codes_map_to_typed_errors(status, code, expected):
    error = error_from_oss(server_error(status, code), op="HeadObject", key="a/b")
    assert type(error) is expected
    assert error.status == status
    assert error.key == "a/b"
    assert error.request_id == "req-1"
    if code:
        assert error.code == code
        assert code in str(error)


def test_invalid_object_name_of_an_overlong_key_is_name_too_long():
    long_key = "d/" + "x" * 1100
    assert isinstance(error_from_oss(server_error(400, "InvalidObjectName"), op="PutObject", key=long_key),
                      types.NameTooLong)
    assert type(error_from_oss(server_error(400, "InvalidObjectName"), op="PutObject", key="bad\\name")) \
        is types.InvalidArgument


def test_auth_errors_keep_their_code_and_errno():
    error = error_from_oss(server_error(403, "SignatureDoesNotMatch"), op="ListObjectsV2")
    assert isinstance(error, types.AccessDenied)
    assert error.code == "SignatureDoesNotMatch"
    assert error.errno == 13  # EACCES


def test_the_string_to_sign_never_reaches_the_message():
    exc = oss2.exceptions.ServerError(
        403, {}, b"<Error><StringToSign>PUT\n\nsecret-bearing</StringToSign></Error>",
        {"Code": "SignatureDoesNotMatch", "Message": "The request signature we calculated does not match",
         "StringToSign": "PUT\n\nsecret-bearing", "OSSAccessKeyId": "id"})
    error = error_from_oss(exc, op="PutObject", key="k")
    assert "secret-bearing" not in str(error)


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_endpoint_unreachable():
    port = closed_port()
    bucket = oss2.Bucket(oss2.Auth("id", "secret"), f"http://127.0.0.1:{port}", "test-bucket")
    with pytest.raises(oss2.exceptions.RequestError) as info:
        bucket.head_object("k")
    error = error_from_oss(info.value, op="HeadObject", key="k")
    assert isinstance(error, types.EndpointUnreachable)
    assert error.retryable
    assert error.code == "ConnectionError"


def test_unresolvable_host_is_endpoint_unreachable():
    with pytest.raises(requests.RequestException) as info:
        requests.get("http://ossmount-no-such-host.invalid/", timeout=5)
    assert isinstance(error_from_oss(info.value, op="GetObject"), types.EndpointUnreachable)


def test_connection_reset_is_transient_not_unreachable():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        bucket = oss2.Bucket(oss2.Auth("id", "secret"), f"http://127.0.0.1:{port}", "test-bucket",
                             connect_timeout=5)
        import threading

        def reset_first_connection():
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()

        thread = threading.Thread(target=reset_first_connection)
        thread.start()
        try:
            with pytest.raises(oss2.exceptions.RequestError) as info:
                bucket.head_object("k")
        finally:
            thread.join()
    error = error_from_oss(info.value, op="HeadObject", key="k")
    assert type(error) is types.TransientError
    assert error.code == "ConnectionReset"


def test_client_side_errors_are_invalid_arguments():
    error = error_from_oss(oss2.exceptions.ClientError("bad bucket name"), op="GetObject")
    assert isinstance(error, types.InvalidArgument)


def test_unrelated_exceptions_are_not_mapped():
    assert error_from_oss(ValueError("bug"), op="GetObject") is None
