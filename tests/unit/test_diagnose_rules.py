"""The problems `ossmount diagnose` names in summary.txt (issue 13, item 5), from collected facts (sans-IO)."""

from __future__ import annotations

import http.server
import threading
import time

from ossmount.ops.diagnose import MountFacts, Secrets, bounded, check_command, clock_skew, problems

NOW = 1_800_000_000.0


def test_a_healthy_host_has_no_problem():
    assert problems([MountFacts("/mnt/a", probe="ok", record={"pid": 1}, pid_alive=True, stats={})],
                    updatedb_state=None, now=NOW) == []


def test_each_problem_in_plain_words():
    expiring = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW + 300))
    stats = {"dirty_files": [{"path": "/mnt/b/x", "state": "failed", "error_code": "AccessDenied", "dirty_bytes": 3}],
             "backend": {"ok": False, "last_error": {"code": "SecurityTokenExpired"}},
             "credentials": {"access_key_id": "STS.****abcd", "expiration": expiring, "reload_error": None}}
    found = problems([
        MountFacts("/mnt/a", probe="ENOTCONN", record={"pid": 12}, pid_alive=False),
        MountFacts("/mnt/b", probe="ok", record={"pid": 13}, pid_alive=True, stats=stats, skew=-1200.0,
                   check=(4, "ossmount check: SignatureDoesNotMatch: ...")),
        MountFacts("/mnt/c", probe="timeout", record={"pid": 14}, pid_alive=True, waiting=7),
    ], updatedb_state=False, now=NOW, buckets=[("bkt", (0, "ok"), 90.0)])
    text = "\n".join(found)
    assert "/mnt/a is a dead mount (ENOTCONN" in text and "pid 12" in text and "fusermount3 -u /mnt/a" in text
    assert "/mnt/c does not answer" in text and "7 requests wait" in text
    assert "1 file(s) could not be uploaded" in text and "/mnt/b/x (AccessDenied, 3 bytes)" in text
    assert "SecurityTokenExpired" in text and "expire in 5 minutes" in text
    assert "1200 s behind the server's: OSS refuses every request" in text
    assert "bkt: this host's clock is 90 s ahead" in text
    assert "SignatureDoesNotMatch" in text
    assert "install-helper --prune-updatedb" in text


def test_secrets_are_scrubbed_from_every_shape(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "AccessKeySecret").write_text("the-secret-value\n")
    (keys / "SecurityToken").write_text("the-token-value")
    passwd = tmp_path / "passwd"
    passwd.write_text("bucket:LTAIexample:another-secret\n")
    secrets = Secrets()
    secrets.from_passwd(str(keys))
    secrets.from_passwd(str(passwd))
    secrets.from_environment({"OSS_SESSION_TOKEN": "env-token-value"})
    text = secrets.scrub("a the-secret-value b the-token-value c another-secret d env-token-value "
                         "'authorization': 'OSS LTAIexample:c2lnbmF0dXJl' Signature=abc")
    for value in ("the-secret-value", "the-token-value", "another-secret", "env-token-value", "c2lnbmF0dXJl",
                  "Signature=abc"):
        assert value not in text


def test_a_hung_probe_is_abandoned():
    started = time.monotonic()
    assert bounded(lambda: time.sleep(30), 0.2, "gave up") == "gave up"
    assert time.monotonic() - started < 10


def test_clock_skew_from_the_date_header():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response_only(403)
            self.send_header("Date", "Mon, 01 Jan 2001 00:00:00 GMT")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        skew = clock_skew(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert skew > 365 * 86400  # this host is years ahead of that server


def test_check_command_carries_how_the_mount_reaches_oss():
    command = check_command("bkt:/p", {"url": "https://oss.example", "passwd_file": "/etc/k", "sigv4": True,
                                       "region": "cn-x", "list_objects_v2": False, "public_bucket": False})
    assert command[-3:] == ["bkt:/p", "-o", "url=https://oss.example,passwd_file=/etc/k,region=cn-x,sigv4,"
                                            "listobjectsv1"]
