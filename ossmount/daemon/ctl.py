"""`ossmount ctl`: the daemon's API for people and scripts (so nobody hand-writes curl calls).

    ossmount ctl volumes
    ossmount ctl stage pv-data my-bucket:/train --url oss-cn-hangzhou.aliyuncs.com --passwd-file /etc/passwd-ossfs
    ossmount ctl publish pv-data /mnt/pod1 --read-only
    ossmount ctl unpublish pv-data /mnt/pod1
    ossmount ctl unstage pv-data

Credentials come from `--passwd-file` (ossfs `BUCKET:AK:SK` lines or a directory of AccessKeyId/AccessKeySecret/
SecurityToken files), else from OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET/OSS_SESSION_TOKEN, else from
/etc/passwd-ossmount: never from the command line. An error prints one line (`CODE (reason): message`, and the
volume's log path) and exits with the code of `CTL_EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ossmount.credentials import resolve_credentials
from ossmount.daemon.client import DEFAULT_SOCKET, DaemonClient, DaemonClientError, credentials_from
from ossmount.errors import (
    ArgumentParser,
    EXIT_AUTH,
    EXIT_BUCKET,
    EXIT_INTERNAL,
    EXIT_MOUNT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    QuietError,
    UsageError,
)
from ossmount.options import parse_bucket_spec

CTL_EXIT_CODES = {
    "INVALID_ARGUMENT": EXIT_USAGE,
    "UNAUTHENTICATED": EXIT_AUTH,
    "PERMISSION_DENIED": EXIT_BUCKET,
    "NOT_FOUND": EXIT_BUCKET,
    "UNAVAILABLE": EXIT_UNREACHABLE,
    "DEADLINE_EXCEEDED": EXIT_UNREACHABLE,
    "ALREADY_EXISTS": EXIT_MOUNT,
    "FAILED_PRECONDITION": EXIT_MOUNT,
    "ABORTED": EXIT_MOUNT,
    "INTERNAL": EXIT_INTERNAL,
}


def _add_spec_flags(parser: argparse.ArgumentParser, *, source_flag: bool) -> None:
    if source_flag:
        parser.add_argument("--source", metavar="BUCKET[:/PREFIX]",
                            help="stage the volume first if it is not staged (then --url is needed)")
    else:
        parser.add_argument("source", metavar="BUCKET[:/PREFIX]")
    parser.add_argument("--url", help="OSS endpoint, e.g. oss-cn-hangzhou.aliyuncs.com")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT...]",
                        help="mount options (ossfs names), repeatable")
    parser.add_argument("--region", default="")
    parser.add_argument("--signature", default="", choices=("", "v1", "v4"))
    parser.add_argument("--volume-read-only", action="store_true", help="mount the whole volume read-only")
    parser.add_argument("--global-path", help="where the volume is mounted (default: under the daemon's --mnt-dir)")
    parser.add_argument("--passwd-file", help="credentials file or directory (default: environment, then "
                                              "/etc/passwd-ossmount)")
    parser.add_argument("--timeout", type=float, help="seconds the mount may take (default 30)")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="ossmount ctl", description="Call the ossmount daemon's API.")
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help=f"daemon socket (default {DEFAULT_SOCKET})")
    parser.add_argument("--json", action="store_true", help="print the daemon's JSON answer")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    commands.add_parser("volumes", help="list the volumes")
    commands.add_parser("volume", help="one volume as JSON").add_argument("volume_id")
    commands.add_parser("health", help="the daemon's health")
    commands.add_parser("metrics", help="the daemon's Prometheus metrics")
    stage = commands.add_parser("stage", help="mount a volume at its global path")
    stage.add_argument("volume_id")
    _add_spec_flags(stage, source_flag=False)
    publish = commands.add_parser("publish", help="bind a staged volume onto a target directory")
    publish.add_argument("volume_id")
    publish.add_argument("target_path")
    publish.add_argument("--read-only", action="store_true", help="bind read-only")
    _add_spec_flags(publish, source_flag=True)
    unpublish = commands.add_parser("unpublish", help="remove a target")
    unpublish.add_argument("volume_id")
    unpublish.add_argument("target_path")
    unstage = commands.add_parser("unstage", help="unmount a volume (after its targets)")
    unstage.add_argument("volume_id")
    unstage.add_argument("--force", action="store_true", help="detach live targets and a busy mount lazily")
    unstage.add_argument("--drain-timeout", type=float, help="seconds to let uploads finish (default 60)")
    unstage.add_argument("--global-path", help="unmount a leftover fuse.ossmount here even if the volume is unknown")
    rotate = commands.add_parser("rotate-credentials", help="replace a volume's credentials without a remount")
    rotate.add_argument("volume_id")
    rotate.add_argument("--passwd-file", help="credentials file or directory (default: environment, then "
                                              "/etc/passwd-ossmount)")
    rotate.add_argument("--timeout", type=float, help="seconds the validation may take (default 30)")
    return parser


def _spec(args: argparse.Namespace, source: str) -> dict[str, Any]:
    if not args.url:
        raise UsageError("--url is needed to stage a volume")
    bucket, prefix = parse_bucket_spec(source)
    return {"bucket": bucket, "prefix": "/" + prefix.rstrip("/"), "endpoint": args.url, "region": args.region,
            "signature": args.signature, "options": list(args.options), "read_only": args.volume_read_only}


def _credentials(bucket: str, passwd_file: str | None) -> dict[str, Any]:
    return credentials_from(resolve_credentials(bucket, passwd_file=passwd_file))


def _summary(answer: dict[str, Any]) -> str:
    volume = answer.get("volume")
    changed = answer.get("changed") or "unchanged"
    if not volume:
        return changed
    process = volume.get("process") or {}
    return (f"{changed}: volume {volume['volume_id']} {volume['state']}, pid {process.get('pid')}, "
            f"{len(volume.get('targets', []))} target(s), global path {volume['global_path']}")


def _table(volumes: list[dict[str, Any]]) -> str:
    rows = [("VOLUME", "STATE", "PID", "GEN", "TARGETS", "SOURCE", "GLOBAL PATH")]
    for volume in volumes:
        spec = volume["spec"]
        process = volume.get("process") or {}
        rows.append((volume["volume_id"], volume["state"], str(process.get("pid") or "-"),
                     str(process.get("generation", "")), str(len(volume.get("targets", []))),
                     f"{spec['bucket']}:{spec['prefix']}", volume["global_path"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def run(args: argparse.Namespace, client: DaemonClient) -> tuple[Any, str]:
    """(JSON answer, human-readable text) of one command."""
    command = args.command
    if command == "volumes":
        volumes = client.volumes()
        return {"volumes": volumes}, _table(volumes) if volumes else "no volumes"
    if command == "volume":
        volume = client.volume(args.volume_id)
        return volume, json.dumps(volume, indent=2, sort_keys=True)
    if command == "health":
        health = client.health()
        return health, f"{health['status']}: ossmount {health['version']}, pid {health['pid']}, {health['volumes']} volume(s)"
    if command == "metrics":
        text = client.metrics()
        return {"metrics": text}, text.rstrip("\n")
    if command == "stage":
        spec = _spec(args, args.source)
        answer = client.stage(args.volume_id, spec, _credentials(spec["bucket"], args.passwd_file),
                              global_path=args.global_path, timeout_s=args.timeout)
    elif command == "publish":
        spec = _spec(args, args.source) if args.source else None
        credentials = _credentials(spec["bucket"], args.passwd_file) if spec else None
        answer = client.publish(args.volume_id, args.target_path, read_only=args.read_only, spec=spec,
                                credentials=credentials, global_path=args.global_path, timeout_s=args.timeout)
    elif command == "unpublish":
        answer = client.unpublish(args.volume_id, args.target_path)
    elif command == "unstage":
        answer = client.unstage(args.volume_id, force=args.force, drain_timeout_s=args.drain_timeout,
                                global_path=args.global_path)
    else:
        bucket = client.volume(args.volume_id)["spec"]["bucket"]
        answer = client.rotate_credentials(args.volume_id, _credentials(bucket, args.passwd_file),
                                           timeout_s=args.timeout)
    return answer, _summary(answer)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    client = DaemonClient(args.socket)
    try:
        answer, text = run(args, client)
    except DaemonClientError as error:
        if args.json:
            document = {key: value for key, value in vars(error).items() if value is not None}
            print(json.dumps({"error": document}, indent=2, sort_keys=True))
        reason = f" ({error.reason})" if error.reason else ""
        log = f" [log: {error.log_path}]" if error.log_path else ""
        raise QuietError(f"{error.code}{reason}: {error.message}{log}", CTL_EXIT_CODES.get(error.code, 1)) from None
    print(json.dumps(answer, indent=2, sort_keys=True) if args.json else text)
    sys.stdout.flush()
    return 0
