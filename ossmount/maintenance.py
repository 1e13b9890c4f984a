"""`ossmount cleanup` and `ossmount recover`: what a mount does after a crash, on demand and without mounting.

    ossmount cleanup BUCKET[:/PREFIX] -o url=...,passwd_file=... [--older-than HOURS] [--dry-run] [--all]
    ossmount recover [BUCKET[:/PREFIX]] [-o url=...,passwd_file=...,tmpdir=...]

Both take the `-o` options and credentials of `ossmount check` (tmpdir= says where the spool is, as for the
mount). `cleanup` aborts the incomplete multipart uploads under the prefix that ossmount started (marker
x-oss-meta-ossmount-upload), initiated more than HOURS ago (default 24), that no mount of this machine still
owns; `--all` also those without the marker (Alibaba Cloud OSS does not list upload metadata: there only `--all`
finds uploads of a mount of another machine); `--dry-run` only lists. `recover` uploads or keeps aside what dead
mounts left in the spool (fs/recovery.py), for one bucket[:/prefix] or, without one, for every bucket with a spool
directory on this machine. Exit codes as `ossmount check` (ossmount.errors); 1 when some upload could not be
aborted or some data could not be recovered (it stays for the next attempt).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import trio

from ossmount.errors import EXIT_OK, UsageError
from ossmount.logsafety import setup_logging

log = logging.getLogger(__name__)

DEFAULT_OLDER_THAN_HOURS = 24.0
EXIT_PARTIAL = 1

CLEANUP_USAGE = ("usage: ossmount cleanup BUCKET[:/PREFIX] -o url=ENDPOINT [-o OPT[,OPT...]]... [--older-than HOURS] "
                 "[--dry-run] [--all] [-d]")
RECOVER_USAGE = "usage: ossmount recover [BUCKET[:/PREFIX]] [-o url=ENDPOINT,tmpdir=DIR,...]... [-d]"
CLEANUP_HELP = """
Abort the incomplete multipart uploads under BUCKET[:/PREFIX] that ossmount started (x-oss-meta-ossmount-upload),
initiated more than HOURS ago (default 24), that no mount of this machine still owns. --all: also uploads without
ossmount's marker (Alibaba Cloud OSS does not list upload metadata, so there only --all finds those of other
machines' mounts). --dry-run: list, abort nothing. Takes the -o options and credentials of `ossmount check`.
"""
RECOVER_HELP = """
Upload what mounts that died left in the spool (tmpdir= as given to the mount): data whose commit (close, fsync)
had begun is uploaded if the object has not changed since, anything else is kept aside in the conflict directory
(each file and its .json named in the output). Without BUCKET: every bucket with a spool directory here.
"""


def _take_flags(argv: list[str], valued: tuple[str, ...], plain: tuple[str, ...]) -> tuple[dict[str, object], list[str]]:
    """Split our own `--flag [VALUE]` / `--flag=VALUE` out of argv; the rest is `ossmount check`'s."""
    found: dict[str, object] = {}
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        name, has_value, value = arg.partition("=")
        if name in valued:
            if not has_value:
                value = next(args, None)
                if value is None:
                    raise UsageError(f"{name} needs a value")
            found[name] = value
        elif arg in plain:
            found[arg] = True
        else:
            rest.append(arg)
    return found, rest


def _hours(text: object) -> float:
    try:
        hours = float(str(text))
    except ValueError:
        hours = -1.0
    if not 0 <= hours < float("inf"):
        raise UsageError(f"--older-than needs a number of hours >= 0, got {text!r}")
    return hours


def _store(bucket: str, prefix: str, options):
    from ossmount.check import CHECK_CONNECT_TIMEOUT, CHECK_READ_TIMEOUT, check_target
    from ossmount.storeconfig import open_store

    store = open_store(bucket, options, prefix=prefix)
    # The mount's checks first: a wrong key, bucket or endpoint is one clear line, not a failed listing.
    trio.run(lambda: check_target(store, prefix, v2=options.list_objects_v2, bucket_info=False,
                                  connect_timeout=CHECK_CONNECT_TIMEOUT, timeout=CHECK_READ_TIMEOUT))
    return store


def cleanup_main(argv: list[str]) -> int:
    from ossmount.fs.journal import mount_id, spool_root
    from ossmount.fs.recovery import abort_stale_uploads, owned_uploads
    from ossmount.options import format_options_help, parse_check_args

    flags, rest = _take_flags(argv, ("--older-than",), ("--dry-run", "--all"))
    args = parse_check_args(rest)
    if args.show_help:
        print(CLEANUP_USAGE)
        print(CLEANUP_HELP)
        print(format_options_help())
        return EXIT_OK
    older_than = _hours(flags.get("--older-than", DEFAULT_OLDER_THAN_HOURS))
    options = args.options
    setup_logging(args.debug, timestamps=not options.no_time_stamp_msg, instance=options.instance_name)
    store = _store(args.bucket, args.prefix, options)
    names, upload_ids = owned_uploads(spool_root(options.tmpdir), mount_id(args.bucket, args.prefix))
    dry_run = bool(flags.get("--dry-run"))
    report = trio.run(lambda: abort_stale_uploads(store, args.prefix, older_than=older_than * 3600,
                                                  owned_names=names, owned_ids=upload_ids, dry_run=dry_run,
                                                  everyone=bool(flags.get("--all"))))
    verb = "would abort" if dry_run else "aborted"
    for upload in report.stale:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(upload.initiated))
        marker = upload.meta.get("ossmount-upload")
        outcome = f"FAILED ({report.failed[upload.upload_id]})" if upload.upload_id in report.failed else verb
        print(f"{outcome}: {upload.key} upload {upload.upload_id} initiated {started}"
              + (f" by ossmount session {marker}" if marker else " (no ossmount marker)"))
    summary = [f"{len(report.stale) - len(report.failed)} {verb}"]
    if report.young:
        summary.append(f"{len(report.young)} started by ossmount less than {older_than:g} hours ago left alone")
    if report.owned:
        summary.append(f"{len(report.owned)} owned by a mount of this machine left alone")
    if report.foreign:
        summary.append(f"{len(report.foreign)} without ossmount's marker left alone (--all aborts them too)")
    print(f"oss://{args.bucket}/{args.prefix}: " + "; ".join(summary))
    return EXIT_PARTIAL if report.failed else EXIT_OK


def recover_main(argv: list[str]) -> int:
    from ossmount.fs.content import conflict_dir_for
    from ossmount.fs.journal import Session, mount_id, spool_root
    from ossmount.fs.recovery import Recovery
    from ossmount.options import format_options_help, parse_bucket_spec, parse_check_args, parse_options
    from ossmount.options import _scan_argv  # noqa: PLC2701 - the same argv grammar as ossmount check

    raw = _scan_argv(argv, allow_foreground=False)
    if raw.show_help:
        print(RECOVER_USAGE)
        print(RECOVER_HELP)
        print(format_options_help())
        return EXIT_OK
    options = parse_options(raw.option_items)
    targets: list[tuple[str, str]] | None = None
    if raw.positionals or options.bucket:
        args = parse_check_args(argv)
        options, targets = args.options, [(args.bucket, args.prefix)]
    setup_logging(raw.debug, timestamps=not options.no_time_stamp_msg, instance=options.instance_name)
    root = spool_root(options.tmpdir)
    if targets is None:
        targets = []
        for name in Session.mount_ids(root):
            for session in Session.dead(root, name):
                described = session.describe()
                session.release()
                if described.get("bucket"):
                    targets.append((described["bucket"], described.get("prefix", "")))
                    break
    status = EXIT_OK
    handled = 0
    for bucket, prefix in dict.fromkeys(targets):
        sessions = Session.dead(root, mount_id(bucket, prefix))
        if not sessions:
            continue
        handled += 1
        spec = f"{bucket}:/{prefix}" if prefix else bucket
        target_options = options
        if not any(item.partition("=")[0].strip() in ("url", "host") for item in raw.option_items):
            endpoint = sessions[0].describe().get("endpoint")
            if endpoint:
                target_options = dataclasses.replace(options, url=endpoint)
        try:
            parse_bucket_spec(spec)
            store = _store(bucket, prefix, target_options)
            recovery = Recovery(store, conflict_dir=conflict_dir_for(options.tmpdir),
                                part_size=options.multipart_size_bytes, parallel_count=options.parallel_count,
                                threshold=options.multipart_threshold_bytes)
            report = trio.run(recovery.run, sessions)
        finally:
            for session in sessions:
                session.release()
        lines = report.lines() or ["nothing to upload (empty sessions removed)"]
        for line in lines:
            print(f"{spec}: {line}")
        if report.failed:
            status = EXIT_PARTIAL
    if not handled:
        print(f"nothing to recover in {root}")
    return status

