"""Credential-bearing values are redacted from log lines, in the shapes oss2 and urllib3 print them."""

import logging

import pytest

from ossmount.logsafety import REDACTED, RedactSecrets, redact


@pytest.mark.parametrize("line, secret", [
    ("headers: {'date': 'x', 'authorization': 'OSS ak-id:c2lnbmF0dXJl'}", "c2lnbmF0dXJl"),
    ("headers: {'Authorization': 'OSS4-HMAC-SHA256 Credential=ak/2026/r/oss/aliyun_v4_request, "
     "Signature=abcdef0123'}", "abcdef0123"),
    ("{'x-oss-security-token': 'sts-token-value', 'date': 'y'}", "sts-token-value"),
    ("x-oss-security-token: sts-token-value", "sts-token-value"),
    ('GET /b/k?security-token=sts-token-value&Expires=1 HTTP/1.1', "sts-token-value"),
    ('GET /b/k?OSSAccessKeyId=ak&Signature=c2ln%3D&Expires=1', "c2ln%3D"),
    ("Authorization: OSS ak-id:c2lnbmF0dXJl", "c2lnbmF0dXJl"),
    ("authorization: AWS ak-id:c2lnbmF0dXJl", "c2lnbmF0dXJl"),
])
def test_redacts_credential_values(line, secret):
    cleaned = redact(line)
    assert secret not in cleaned and REDACTED in cleaned


def test_leaves_ordinary_lines_alone():
    line = "GET /bucket/key?list-type=2&prefix=a%20b 200 248 'date': 'Tue'"
    assert redact(line) == line


def test_filter_rewrites_formatted_records():
    record = logging.LogRecord("oss2.http", logging.DEBUG, __file__, 1, "headers: %s",
                               ({"authorization": "OSS ak:sig"},), None)
    assert RedactSecrets().filter(record)
    assert "sig" not in record.getMessage() and REDACTED in record.getMessage()


def test_check_debug_output_redacts_oss2_request_headers(local_server, fresh_bucket_name, tmp_path):
    """`ossmount check -d` prints oss2's request headers, with the signature redacted."""
    import subprocess
    import sys

    passwd = tmp_path / "passwd"
    passwd.write_text(f"{local_server.access_key_id}:{local_server.access_key_secret}\n")
    passwd.chmod(0o600)
    result = subprocess.run([sys.executable, "-m", "ossmount", "check", fresh_bucket_name, "-d", "-o",
                             f"url={local_server.endpoint},passwd_file={passwd}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "authorization" in result.stderr.lower() and REDACTED in result.stderr
    assert f"OSS {local_server.access_key_id}:" not in result.stderr
