"""ossmount.daemon.state, .creds and .child: the files the daemon keeps and the FUSE process's command line."""

from __future__ import annotations

import json
import os
import stat
import sys

from ossmount.credentials import read_credentials_dir
from ossmount.daemon import child, creds
from ossmount.daemon.api import CredentialsInput, VolumeSpec
from ossmount.daemon.state import RunDir, Target, VolumeRecord
from ossmount.options import parse_mount_args

SECRET = "the-secret-value"
TOKEN = "the-token-value"
SPEC = VolumeSpec.from_json({"bucket": "data", "prefix": "/train", "endpoint": "http://127.0.0.1:9000",
                             "options": "-o umask=022"})


def record(**changes) -> VolumeRecord:
    values = dict(volume_id="pv-1", spec=SPEC, global_path="/run/ossmount/mnt/x/globalmount", state="ready",
                  dev="0:50", mount_id=100, pid=42, start_time=12345, generation=2, restarts=1,
                  previous_devs=["0:49"], targets=[Target("/var/lib/kubelet/pods/a/mount", True, pod={"uid": "u"})],
                  credentials={"type": "sts", "access_key_id": "STS.****abcd"})
    values.update(changes)
    return VolumeRecord(**values)


def test_record_round_trips_through_its_state_file(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    run.create()
    original = record()
    run.save(original)
    path = run.state_path(original.vh)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(run.state_dir).st_mode) == 0o700
    [loaded] = list(run.load_all())
    assert loaded.to_json() == original.to_json()
    assert loaded.target("/var/lib/kubelet/pods/a/mount").read_only
    document = json.loads(open(path).read())
    assert document["spec_hash"] == SPEC.spec_hash and document["mount"]["fstype"] == "fuse.ossmount"
    run.delete(original.vh)
    assert list(run.load_all()) == []


def test_unreadable_state_files_are_set_aside(tmp_path, caplog):
    run = RunDir(str(tmp_path / "run"))
    run.create()
    good = record(volume_id="good")
    run.save(good)
    with open(run.state_path("0" * 64), "w") as handle:
        handle.write("{not json")
    with open(run.state_path("1" * 64), "w") as handle:  # valid, but under another volume's hash
        json.dump(record(volume_id="elsewhere").to_json(), handle)
    assert [r.volume_id for r in run.load_all()] == ["good"]
    assert os.path.exists(run.state_path("0" * 64) + ".corrupt")
    assert "unreadable" in caplog.text


def test_previous_devs_are_bounded():
    found = record(previous_devs=[])
    for number in range(40):
        found.dev = f"0:{number}"
        found.remember_dev()
    assert len(found.previous_devs) == 16 and found.previous_devs[-1] == "0:39"


def test_credentials_directory_swaps_atomically_and_keeps_one_old_generation(tmp_path):
    directory = str(tmp_path / "creds")
    first = CredentialsInput("sts", "STS.first", SECRET, TOKEN, "2030-01-01T00:00:00Z")
    link = creds.write_credentials(directory, first)
    assert os.path.islink(link) and stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    loaded = read_credentials_dir(link)
    assert (loaded.access_key_id, loaded.access_key_secret, loaded.security_token, loaded.expiration) == (
        "STS.first", SECRET, TOKEN, "2030-01-01T00:00:00Z")
    assert all(stat.S_IMODE(os.stat(os.path.join(link, name)).st_mode) == 0o600 for name in os.listdir(link))
    assert creds.same_credentials(directory, first)
    second = CredentialsInput("access_key", "AK2", SECRET)
    assert not creds.same_credentials(directory, second)
    for _ in range(3):
        creds.write_credentials(directory, second)
    assert read_credentials_dir(link).security_token is None  # access keys and STS share the layout
    assert len([name for name in os.listdir(directory) if name.startswith("keys.")]) == 2
    creds.remove_credentials(directory)
    assert not os.path.exists(directory)


def test_mount_command_holds_paths_only_and_parses_as_a_mount():
    command = child.mount_command((sys.executable, "-m", "ossmount"), SPEC, "/g", passwd_path="/run/c/keys",
                                  log_path="/run/v/ossmount.log", status_path="/run/v/status.json",
                                  status_interval=0.5, ready_fd=7)
    assert SECRET not in " ".join(command)
    from ossmount.mount import split_runtime_flags

    rest, flags = split_runtime_flags(command[3:])
    args = parse_mount_args(rest[1:])
    assert (args.bucket, args.prefix, args.mountpoint, args.foreground, args.ready_fd) == ("data", "train/", "/g",
                                                                                          True, 7)
    assert args.options.passwd_file == "/run/c/keys" and args.options.umask == 0o22 and args.options.allow_other
    assert (flags.log_file, flags.status_file, flags.status_interval) == ("/run/v/ossmount.log",
                                                                          "/run/v/status.json", 0.5)


def test_child_environment_drops_anything_credential_like():
    environ = {"PATH": "/bin", "OSS_ACCESS_KEY_ID": "AK", "OSS_ACCESS_KEY_SECRET": SECRET, "OSS_SESSION_TOKEN": TOKEN,
               "AWS_SECRET_ACCESS_KEY": SECRET, "MY_PASSWORD": "x", "LANG": "C",
               # ossfs's names, which the mount reads too
               "OSSACCESSKEYID": "AK", "OSSSECRETACCESSKEY": SECRET, "OSSSESSIONTOKEN": TOKEN}
    assert child.child_environment(environ) == {"PATH": "/bin", "LANG": "C"}
    assert "NOTIFY_SOCKET" not in child.child_environment({"NOTIFY_SOCKET": "/run/systemd/notify"})


def test_log_tail_takes_the_last_lines_of_each_log(tmp_path):
    log, stderr = tmp_path / "ossmount.log", tmp_path / "ossmount.stderr"
    log.write_text("".join(f"line {n}\n" for n in range(100)))
    stderr.write_text("ossmount mount: NoSuchBucket: bucket 'x' does not exist\n")
    tail = child.read_log_tail([str(log), str(stderr), str(tmp_path / "missing")], lines=5)
    assert tail.splitlines() == ["line 96", "line 97", "line 98", "line 99",
                                 "ossmount mount: NoSuchBucket: bucket 'x' does not exist"]
    assert len(child.read_log_tail([str(log)], max_bytes=64)) <= 64
