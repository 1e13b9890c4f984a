"""The durable spool's directory rules and journal records (ossmount/fs/journal.py), on a temporary directory."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys

from ossmount.fs.journal import Entry, Session, mount_id, spool_root


def test_where_the_spool_lives():
    assert spool_root("/data/tmp", uid=0) == "/data/tmp/ossmount-spool-0"
    assert spool_root("/data/tmp", uid=1000) == "/data/tmp/ossmount-spool-1000"
    assert spool_root(None, uid=0) == "/var/lib/ossmount/spool"
    assert spool_root(None, uid=1000, environ={}, home="/home/u") == "/home/u/.local/state/ossmount/spool"
    assert spool_root(None, uid=1000, environ={"XDG_STATE_HOME": "/s"}, home="/home/u") == "/s/ossmount/spool"
    # $HOME is not trusted (it may still be root's); a user without a home of their own gets /var/tmp
    assert spool_root(None, uid=4242424, environ={"HOME": "/root"}) == "/var/tmp/ossmount-spool-4242424"


def test_mount_ids_name_bucket_and_prefix_readably_and_stay_short():
    assert mount_id("my-bucket") == "my-bucket"
    assert mount_id("my-bucket", "team/data/") == "my-bucket%3A%2Fteam%2Fdata%2F"
    assert mount_id("b", "x/") != mount_id("b", "y/") != mount_id("b")
    long = mount_id("bucket", "p/" * 300)
    assert len(long) < 100 and long.startswith("bucket~") and long == mount_id("bucket", "p/" * 300)


def test_a_session_is_locked_while_its_process_lives(tmp_path):
    session = Session.create(str(tmp_path), "bkt", {"bucket": "bkt", "prefix": ""})
    assert session.describe()["bucket"] == "bkt" and session.describe()["pid"] == os.getpid()
    assert Session.dead(str(tmp_path), "bkt") == []  # our own lock is held
    # Another process sees it alive too.
    probe = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\n"
             "try:\n fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
             "except OSError: print('held')")
    held = subprocess.run([sys.executable, "-c", probe, os.path.join(session.path, "lock")], capture_output=True,
                          text=True)
    assert held.stdout.strip() == "held"
    session.release()
    [dead] = Session.dead(str(tmp_path), "bkt")
    assert dead.path == session.path
    dead.release()


def test_sessions_of_a_dead_process_are_found_with_their_records(tmp_path):
    script = ("import sys; from ossmount.fs.journal import Session\n"
              "s = Session.create(sys.argv[1], 'bkt', {'bucket': 'bkt'})\n"
              "e = s.new_entry(); open(e.data_path, 'wb').write(b'data'); e.save({'state': 'failed', 'key': 'k'})\n"
              "s.new_entry().save({'state': 'dirty', 'key': 'j'})\n"
              "orphan = s.new_entry(); open(orphan.data_path, 'wb').write(b'no record')\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)  # exits: its lock is released
    [session] = Session.dead(str(tmp_path), "bkt")
    entries = session.entries()
    assert [(e.number, (r or {}).get("state")) for e, r in entries] == [(1, "failed"), (2, "dirty"), (3, None)]
    assert entries[0][1]["version"] == 1 and open(entries[0][0].data_path, "rb").read() == b"data"
    assert session.has_records()
    # A new session of the same mount id numbers its entries on from 1 again, in its own directory.
    fresh = Session.create(str(tmp_path), "bkt", {})
    assert fresh.new_entry().number == 1 and fresh.path != session.path
    for entry, _ in entries:
        entry.discard()
    assert not session.has_records()
    session.remove()
    assert not os.path.exists(session.path)
    session.release()
    assert fresh.close() and not os.path.exists(os.path.join(str(tmp_path), "bkt"))


def test_records_are_replaced_atomically(tmp_path):
    entry = Entry(str(tmp_path), 7)
    entry.save({"state": "dirty", "key": "k", "size": 1})
    entry.save({"state": "committing", "key": "k", "size": 2}, durable=True)
    assert sorted(os.listdir(tmp_path)) == ["000007.json"]  # no temporary file left
    record = json.loads((tmp_path / "000007.json").read_text())
    assert (record["state"], record["size"], record["version"]) == ("committing", 2, 1)
    assert entry.saved_state == "committing"
    (tmp_path / "000007.json").write_text("{truncated")
    assert entry.load() is None
    entry.forget()
    assert entry.load() is None and entry.saved_state is None


def test_close_keeps_a_session_with_records_for_the_next_mount(tmp_path):
    session = Session.create(str(tmp_path), "bkt", {})
    session.new_entry().save({"state": "failed", "key": "k"})
    assert session.close() is False and os.path.isdir(session.path)
    fd = os.open(os.path.join(session.path, "lock"), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by close
    os.close(fd)
