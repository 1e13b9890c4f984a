"""ossmount.credentials: passwd files, environment, default file, credentials directories."""

from __future__ import annotations

import os

import pytest

from ossmount.credentials import (
    Credentials,
    FileCredentials,
    check_file_mode,
    parse_passwd_text,
    read_credentials_dir,
    resolve_credentials,
    resolve_provider,
)
from ossmount.errors import EXIT_CONFIG, ConfigError

SECRET = "S3cr3t-Value"


def write(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


PASSWD_CASES = [
    ("AK:SK\n", "bkt", ("AK", "SK")),
    ("bkt:AK1:SK1\nAK2:SK2\n", "bkt", ("AK1", "SK1")),
    ("AK2:SK2\nbkt:AK1:SK1\n", "bkt", ("AK1", "SK1")),
    ("other:AK1:SK1\nAK2:SK2\n", "bkt", ("AK2", "SK2")),
    ("# comment\n\n  bkt:AK:SK  \n", "bkt", ("AK", "SK")),
    ("bkt:AK1:SK1\nbkt:AK3:SK3\n", "bkt", ("AK1", "SK1")),
    ("AK1:SK1\nAK2:SK2\n", "bkt", ("AK1", "SK1")),
    ("other:AK1:SK1\n", "bkt", None),
    ("", "bkt", None),
]


@pytest.mark.parametrize("text, bucket, expected", PASSWD_CASES)
def test_parse_passwd_text(text, bucket, expected):
    found = parse_passwd_text(text, bucket, source="f")
    if expected is None:
        assert found is None
    else:
        assert (found.access_key_id, found.access_key_secret) == expected
        assert found.security_token is None and found.source == "f"


@pytest.mark.parametrize("text, line", [
    ("AK\n", 1),
    ("ok:ok\na:b:c:d:e\n", 2),
    (f"bkt::{SECRET}\n", 1),
    (f":{SECRET}\n", 1),
])
def test_malformed_line_names_file_and_line_without_secret(text, line):
    with pytest.raises(ConfigError) as info:
        parse_passwd_text(text, "bkt", source="/etc/pw")
    assert f"/etc/pw:{line}:" in str(info.value)
    assert SECRET not in str(info.value)
    assert info.value.exit_code == EXIT_CONFIG


def test_repr_masks_secrets():
    creds = Credentials("AKID", SECRET, "TOKEN-xyz", "env")
    for text in (repr(creds), str(creds), f"{creds}"):
        assert "AKID" in text and SECRET not in text and "TOKEN-xyz" not in text
    assert creds.is_sts and not Credentials("A", "B").is_sts


@pytest.mark.parametrize("mode, allowed", [
    (0o600, True), (0o400, True), (0o640, True), (0o440, True),
    (0o644, False), (0o660, False), (0o604, False), (0o700, False), (0o610, False), (0o666, False),
])
def test_file_mode_rule(tmp_path, mode, allowed):
    path = write(tmp_path / "pw", f"AK:{SECRET}\n", mode)
    if allowed:
        assert resolve_credentials("bkt", passwd_file=path, environ={}).access_key_id == "AK"
    else:
        with pytest.raises(ConfigError) as info:
            resolve_credentials("bkt", passwd_file=path, environ={})
        message = str(info.value)
        assert str(path) in message and f"{mode:04o}" in message and f"chmod 600 {path}" in message
        assert SECRET not in message


def test_check_file_mode_ignores_type_bits():
    check_file_mode("/x", 0o100600)
    with pytest.raises(ConfigError):
        check_file_mode("/x", 0o100604)


def test_order_passwd_file_then_env_then_default(tmp_path):
    passwd = write(tmp_path / "pw", "bkt:FILE:SK\n")
    default = write(tmp_path / "default", "bkt:DEFAULT:SK\n")
    env = {"OSS_ACCESS_KEY_ID": "ENV", "OSS_ACCESS_KEY_SECRET": "SK", "OSS_SESSION_TOKEN": "TOK"}
    assert resolve_credentials("bkt", passwd_file=passwd, environ=env, default_path=default).access_key_id == "FILE"
    from_env = resolve_credentials("bkt", environ=env, default_path=default)
    assert (from_env.access_key_id, from_env.security_token, from_env.source) == ("ENV", "TOK", "environment")
    from_default = resolve_credentials("bkt", environ={}, default_path=default)
    assert from_default.access_key_id == "DEFAULT" and from_default.source == str(default)


def test_env_without_token_is_plain_keys(tmp_path):
    creds = resolve_credentials("bkt", environ={"OSS_ACCESS_KEY_ID": "A", "OSS_ACCESS_KEY_SECRET": "B",
                                                "OSS_SESSION_TOKEN": ""}, default_path=tmp_path / "none")
    assert creds.security_token is None


def test_half_env_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="OSS_ACCESS_KEY_SECRET is not set"):
        resolve_credentials("bkt", environ={"OSS_ACCESS_KEY_ID": "A"}, default_path=tmp_path / "none")


def test_nothing_found_names_all_three_sources(tmp_path):
    missing = tmp_path / "passwd-ossmount"
    with pytest.raises(ConfigError) as info:
        resolve_credentials("bkt", environ={}, default_path=missing)
    message = str(info.value)
    assert "passwd_file" in message and "OSS_ACCESS_KEY_ID" in message and str(missing) in message


def test_explicit_passwd_file_missing_or_without_line(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_credentials("bkt", passwd_file=tmp_path / "nope", environ={"OSS_ACCESS_KEY_ID": "A",
                                                                          "OSS_ACCESS_KEY_SECRET": "B"})
    other = write(tmp_path / "pw", "other:A:B\n")
    with pytest.raises(ConfigError, match="no line for bucket 'bkt'"):
        resolve_credentials("bkt", passwd_file=other, environ={})


def test_default_file_too_open_is_refused(tmp_path):
    default = write(tmp_path / "default", "A:B\n", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        resolve_credentials("bkt", environ={}, default_path=default)


@pytest.mark.parametrize("names", [
    ("AccessKeyId", "AccessKeySecret", "SecurityToken"),
    ("accesskeyid", "accesskeysecret", "securitytoken"),
    ("akId", "akSecret", None),
])
def test_credentials_directory(tmp_path, names):
    directory = tmp_path / "creds"
    directory.mkdir()
    id_name, secret_name, token_name = names
    (directory / id_name).write_text("DIRAK\n")
    (directory / secret_name).write_text(SECRET + "\n")
    if token_name:
        (directory / token_name).write_text("TOKEN\n")
        (directory / "Expiration").write_text("2030-01-01T00:00:00Z\n")
    creds = read_credentials_dir(directory)
    assert creds.expiration == ("2030-01-01T00:00:00Z" if token_name else None)
    assert SECRET not in repr(creds) and "TOKEN" not in repr(creds)
    assert (creds.access_key_id, creds.access_key_secret) == ("DIRAK", SECRET)
    assert creds.security_token == ("TOKEN" if token_name else None)
    # a directory given as passwd_file is read the same way (CSI daemon's STS layout)
    assert resolve_credentials("bkt", passwd_file=directory, environ={}).access_key_id == "DIRAK"


def test_credentials_directory_incomplete(tmp_path):
    (tmp_path / "AccessKeyId").write_text("A")
    with pytest.raises(ConfigError, match="no AccessKeyId and AccessKeySecret"):
        read_credentials_dir(tmp_path)
    (tmp_path / "AccessKeySecret").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        read_credentials_dir(tmp_path)


def test_source_reloads_rotated_directory(tmp_path):
    """The CSI daemon swaps a symlink to a new timestamped directory; load() sees the new keys."""
    first, second = tmp_path / "v1", tmp_path / "v2"
    for directory, key in ((first, "AK1"), (second, "AK2")):
        directory.mkdir()
        (directory / "AccessKeyId").write_text(key)
        (directory / "AccessKeySecret").write_text("S")
        (directory / "SecurityToken").write_text("T-" + key)
    link = tmp_path / "sts"
    link.symlink_to(first)
    source = resolve_provider("bkt", passwd_file=link, environ={})
    assert source.load().access_key_id == "AK1"
    temp = tmp_path / "sts.tmp"
    temp.symlink_to(second)
    os.replace(temp, link)
    reloaded = source.load()
    assert (reloaded.access_key_id, reloaded.security_token) == ("AK2", "T-AK2")


def test_source_reloads_passwd_file_and_env_is_fixed(tmp_path):
    passwd = write(tmp_path / "pw", f"bkt:AK1:{SECRET}\n")
    source = resolve_provider("bkt", passwd_file=passwd, environ={})
    assert source.load().access_key_id == "AK1"
    write(passwd, f"bkt:AK2:{SECRET}\n")
    assert source.load().access_key_id == "AK2"
    assert SECRET not in repr(source) and str(passwd) in repr(source)
    env_source = resolve_provider("bkt", environ={"OSS_ACCESS_KEY_ID": "E", "OSS_ACCESS_KEY_SECRET": "S"},
                                           default_path=tmp_path / "none")
    assert env_source == Credentials("E", "S", None, "environment")  # fixed keys are their own provider
    assert env_source.current() is env_source and env_source.reloads == 0


def _key_dir(path, key, token):
    path.mkdir()
    (path / "AccessKeyId").write_text(key)
    (path / "AccessKeySecret").write_text(SECRET)
    (path / "SecurityToken").write_text(token)
    return path


def _swap(link, target):
    temp = link.parent / (link.name + ".tmp")
    temp.symlink_to(target.name)
    os.replace(temp, link)


def test_current_rereads_only_when_the_source_changes(tmp_path, monkeypatch):
    """The store asks `current()` before every request: an unchanged source is not re-read, a swapped one is."""
    _key_dir(tmp_path / "keys.1", "STS.AK1", "token-1")
    _key_dir(tmp_path / "keys.2", "STS.AK2", "token-2")
    link = tmp_path / "keys"
    link.symlink_to("keys.1")
    source = resolve_provider("bkt", passwd_file=link, environ={})
    reads = []
    original = FileCredentials.load
    monkeypatch.setattr(FileCredentials, "load", lambda self: reads.append(1) or original(self))
    assert source.current().security_token == "token-1"
    assert source.current().security_token == "token-1"
    assert len(reads) == 1 and source.reloads == 0
    _swap(link, tmp_path / "keys.2")
    assert (source.current().access_key_id, source.current().security_token) == ("STS.AK2", "token-2")
    assert len(reads) == 2 and source.reloads == 1


def test_current_keeps_the_old_keys_while_the_new_ones_are_unreadable(tmp_path):
    _key_dir(tmp_path / "keys.1", "AK1", "token-1")
    link = tmp_path / "keys"
    link.symlink_to("keys.1")
    source = resolve_provider("bkt", passwd_file=link, environ={})
    assert source.current().access_key_id == "AK1"
    broken = tmp_path / "keys.2"
    broken.mkdir()
    (broken / "AccessKeyId").write_text("AK2")  # no secret yet: a writer in the middle of its work
    _swap(link, broken)
    assert source.current().access_key_id == "AK1"
    assert "AccessKeySecret" in source.reload_error and SECRET not in source.reload_error
    (broken / "AccessKeySecret").write_text(SECRET)
    assert source.current().access_key_id == "AK2" and source.reload_error is None


def test_current_of_a_passwd_file_follows_a_rewrite(tmp_path):
    passwd = write(tmp_path / "pw", f"bkt:AK1:{SECRET}\n")
    source = resolve_provider("bkt", passwd_file=passwd, environ={})
    assert source.current().access_key_id == "AK1"
    replacement = write(tmp_path / "pw.new", f"bkt:AK2:{SECRET}\n")
    os.replace(replacement, passwd)
    assert source.current().access_key_id == "AK2"


# -- ossfs environment names, use_session_token, the ECS RAM role (issue 7) ----------------------------------


def test_ossfs_environment_names_are_read_too():
    from ossmount.credentials import credentials_from_environ

    found = credentials_from_environ({"OSSACCESSKEYID": "AK", "OSSSECRETACCESSKEY": SECRET,
                                      "OSSSESSIONTOKEN": "tok"})
    assert (found.access_key_id, found.security_token) == ("AK", "tok")
    ours = credentials_from_environ({"OSS_ACCESS_KEY_ID": "A1", "OSS_ACCESS_KEY_SECRET": "S1",
                                     "OSSACCESSKEYID": "A2", "OSSSECRETACCESSKEY": "S2"})
    assert ours.access_key_id == "A1"
    with pytest.raises(ConfigError, match="OSSSECRETACCESSKEY is not set"):
        credentials_from_environ({"OSSACCESSKEYID": "AK"})


def test_use_session_token_requires_a_token():
    from ossmount.credentials import require_session_token

    assert require_session_token(Credentials("STS.a", "s", "t")).security_token == "t"
    with pytest.raises(ConfigError, match="use_session_token: .* have no session token; set OSS_SESSION_TOKEN"):
        require_session_token(Credentials("AK", SECRET, None, "environment"))


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_ecs_answer_parsing():
    import json

    from ossmount.credentials import parse_ecs_credentials, parse_ecs_role_list

    answer = json.dumps({"Code": "Success", "AccessKeyId": "STS.k", "AccessKeySecret": SECRET, "SecurityToken": "t",
                         "Expiration": "2030-01-01T06:00:00Z", "LastUpdated": "2030-01-01T00:00:00Z"})
    credentials, expires_at, lifetime = parse_ecs_credentials(answer, "Role")
    assert (credentials.access_key_id, credentials.security_token, lifetime) == ("STS.k", "t", 6 * 3600)
    assert credentials.source == "ram role Role" and SECRET not in repr(credentials)
    assert expires_at == 1893477600.0
    for bad, message in (("nope", "not JSON"), ('{"Code": "Failed"}', "refused"),
                         ('{"Code": "Success", "AccessKeyId": "a"}', "lacks")):
        with pytest.raises(ConfigError, match=f"ram_role Role: .*{message}"):
            parse_ecs_credentials(bad, "Role")
    assert parse_ecs_role_list("\nEcsRole\n") == "EcsRole"
    with pytest.raises(ConfigError, match="no RAM role attached"):
        parse_ecs_role_list("\n")


@pytest.mark.parametrize("hardened", [False, True])
def test_ram_role_credentials_come_from_the_metadata_service_and_are_renewed(hardened):
    from ossmount.credentials import EcsRamRoleCredentials
    from ossmount.testing import FakeEcsMetadata

    clock = Clock(1_900_000_000.0)
    with FakeEcsMetadata("EcsRole", ("STS.one", SECRET, "tok-1", clock.now + 3600),
                         require_token=hardened) as metadata:
        provider = EcsRamRoleCredentials(None, endpoint=metadata.endpoint, clock=clock)
        assert provider.access_key_id == "(RAM role of this instance)"
        assert provider.current().access_key_id == "STS.one"
        metadata.credentials = ("STS.two", SECRET, "tok-2", clock.now + 7200)
        clock.now += 60
        assert provider.current().access_key_id == "STS.one"  # fresh: answered from memory
        clock.now += 2940  # 600 s left of a 6 h lifetime: less than 15% -> renewed
        renewed = provider.current()
        assert (renewed.access_key_id, renewed.security_token) == ("STS.two", "tok-2")
        assert provider.reloads == 1 and provider.reload_error is None
        gets = [path for method, path in metadata.requests if method == "GET"]
    assert gets.count("/latest/meta-data/ram/security-credentials/EcsRole") == 2
    assert ("PUT", "/latest/api/token") in metadata.requests


def test_a_named_role_is_asked_directly_and_failures_keep_valid_credentials(caplog):
    from ossmount.credentials import EcsRamRoleCredentials
    from ossmount.testing import FakeEcsMetadata

    clock = Clock(1_900_000_000.0)
    with FakeEcsMetadata("Named", ("STS.one", SECRET, "tok-1", clock.now + 600)) as metadata:
        provider = EcsRamRoleCredentials("Named", endpoint=metadata.endpoint, clock=clock)
        assert provider.current().access_key_id == "STS.one"
        assert ("GET", "/latest/meta-data/ram/security-credentials/") not in metadata.requests
        metadata.role = "Renamed"  # the role is detached: asking again fails
        clock.now += 550  # within the last 60 s
        assert provider.current().access_key_id == "STS.one"  # still valid: kept, with a warning
        assert "ram_role Named" in caplog.text and "still signing" in caplog.text
        assert "answered 404" in provider.reload_error
        clock.now += 100  # expired now
        with pytest.raises(ConfigError, match="ram_role Named: .*answered 404"):
            provider.current()


def test_unreachable_metadata_service_is_one_clear_error():
    from ossmount.credentials import EcsRamRoleCredentials

    provider = EcsRamRoleCredentials(None, endpoint="http://127.0.0.1:9", timeout=2)
    with pytest.raises(ConfigError, match="cannot reach the instance metadata service at http://127.0.0.1:9"):
        provider.current()
