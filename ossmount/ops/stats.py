"""`ossmount stats MOUNTPOINT [--json] [--watch SECONDS] [--by process|operation] [--set-log-level LEVEL]`.

The mount builds one JSON document (`MountTelemetry.snapshot`, version 1; fields are only ever added) and
sends it over its control channel (`ossmount.ops.control`); this command prints it as text, or as JSON with
`--json` (one document per line with `--watch`).

Document:
    {"version": 1, "pid", "mountpoint", "bucket", "prefix", "endpoint", "started_at", "at",   # epoch seconds
     "log": {"level": "warn", "target": "syslog"|"file"|"stderr", "path", "reason"},
     "requests": {"total", "by_operation": {"GetObject": 3}, "by_status": {"GetObject 206": 3},
                  "errors": {"PutObject AccessDenied": 1}, "in_flight", "retries"},
     "bytes": {"down", "up"},                                    # OSS bodies received and sent
     "latency_seconds": {"GetObject": {"count", "sum", "p50", "p90", "p99"}},   # bucket upper bounds
     "processes": [{"pid", "command", "uid", "requests": {"HeadObject": 2}, "total", "errors", "bytes_in",
                    "bytes_out", "first_seen", "last_seen"}],   # most active first; pid null: pseudo-process
     "fuse": {"lookup": {"count", "errors": {"ENOENT": 1}, "p50", "p99"}},
     "cache": {"stat": {"hits", "misses", "hit_rate"}, "listing": {...}, "data": {...}, "negative_hits"},
     "files": {"open_handles", "open_contents", "dirty", "dirty_bytes", "upload_failures"},
     "dirty_files": [{"path", "key", "size", "dirty_bytes", "dirty_since", "age_seconds", "state",
                      "open_handles", "error_code", "error_request_id", "failed_at", "error"}],
     "uploads_in_flight": [{"path", "key", "size", "since", "seconds"}],
     "last_errors": [{"at", "operation", "key", "code", "status", "request_id", "message", "caller"}],
     "backend": {"ok", "last_error", "last_ok_at"}, "credentials": {...masked...},
     "options": {...every mount option; no secret is an option...}}

Pseudo-processes: `[mount]` (the checks before the mount is live), `[unmount]` (files flushed at unmount),
`[background]` (work started outside any FUSE request), `[kernel]` (requests with pid 0),
`[other processes]` (processes folded out of the table, which keeps the 256 most active).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any

from ossmount.errors import EXIT_OK, ArgumentParser
from ossmount.ops import control

STATS_VERSION = 1


def _rate(hits: int, misses: int) -> dict[str, Any]:
    total = hits + misses
    return {"hits": hits, "misses": misses, "hit_rate": round(hits / total, 4) if total else None}


def options_document(options: Any) -> dict[str, Any]:
    """The mount's effective options as JSON (no option holds a secret: passwd_file= is a path)."""
    document = {}
    for item in dataclasses.fields(options):
        value = getattr(options, item.name)
        if isinstance(value, float) and math.isinf(value):
            value = "inf"
        elif isinstance(value, tuple):
            value = list(value)
        document[item.name] = value
    return document


class MountTelemetry:
    """What `ossmount stats` and the metrics show about one mount; every method runs on the trio thread.

    `fs` and `contents` are attached once built (`attach`), so the document is valid from the first request on.
    """

    def __init__(self, *, mountpoint: str, bucket: str, prefix: str, options: Any, store: Any, calls: Any,
                 levels: Any, log_target: Any, clock: Any = time.time):
        self.mountpoint = mountpoint
        self.bucket = bucket
        self.prefix = prefix
        self.options = options
        self.store = store
        self.calls = calls
        self.levels = levels
        self.log_target = log_target
        self._clock = clock
        self.started_at = clock()
        self.fs: Any = None
        self.contents: Any = None

    def attach(self, fs: Any, contents: Any) -> None:
        self.fs = fs
        self.contents = contents

    def path_of(self, key: str) -> str:
        relative = key[len(self.prefix):] if key.startswith(self.prefix) else key
        return self.mountpoint.rstrip("/") + "/" + relative

    def cache_counts(self) -> dict[str, Any]:
        cache = self.fs.ns.cache if self.fs is not None else None
        content = self.contents.statistics() if self.contents is not None else None
        return {
            "stat": _rate(cache.stat_hits, cache.stat_misses) if cache else _rate(0, 0),
            "listing": _rate(cache.listing_hits, cache.listing_misses) if cache else _rate(0, 0),
            "data": _rate(content.prefetch_hits, content.prefetch_misses) if content else _rate(0, 0),
            "negative_hits": cache.negative_hits if cache else 0,
        }

    def dirty_files(self) -> list[Any]:
        return self.contents.dirty_files() if self.contents is not None else []

    def snapshot(self) -> dict[str, Any]:
        from ossmount.status import backend_verdict, credentials_status

        now = self._clock()
        ledger = self.store.ledger
        stats = self.store.statistics()
        by_operation = ledger.requests_by_operation()
        dirty = self.dirty_files()
        content = self.contents.statistics() if self.contents is not None else None
        return {
            "version": STATS_VERSION, "pid": os.getpid(), "mountpoint": self.mountpoint, "bucket": self.bucket,
            "prefix": self.prefix, "endpoint": self.options.url, "started_at": self.started_at, "at": now,
            "log": {"level": self.levels.current, **self.log_target.to_json()},
            "requests": {
                "total": sum(by_operation.values()), "by_operation": dict(sorted(by_operation.items())),
                "by_status": {f"{op} {status}": n for (op, status), n in sorted(ledger.by_status.items())},
                "errors": {f"{op} {code}": n for (op, code), n in sorted(ledger.errors.items())},
                "in_flight": ledger.in_flight, "retries": stats.retries,
            },
            "bytes": {"down": ledger.bytes_in, "up": ledger.bytes_out},
            "latency_seconds": {op: {"count": h.count, "sum": round(h.total, 6), "p50": h.quantile(0.5),
                                     "p90": h.quantile(0.9), "p99": h.quantile(0.99)}
                                for op, h in sorted(ledger.latency.items())},
            "processes": [usage.to_json() for usage in ledger.callers.rows()],
            "fuse": {op: {"count": h.count, "p50": h.quantile(0.5), "p99": h.quantile(0.99),
                          "errors": {name: n for (o, name), n in self.calls.statistics.errors.items() if o == op}}
                     for op, h in sorted(self.calls.statistics.latency.items())},
            "cache": self.cache_counts(),
            "files": {"open_handles": self.fs.open_handle_count() if self.fs is not None else 0,
                      "open_contents": content.open_contents if content else 0, "dirty": len(dirty),
                      "dirty_bytes": sum(f.dirty_bytes for f in dirty),
                      "upload_failures": content.upload_failures if content else 0},
            "dirty_files": [{"path": self.path_of(f.key), "key": f.key, "size": f.size, "dirty_bytes": f.dirty_bytes,
                             "dirty_since": f.dirty_since,
                             "age_seconds": round(now - f.dirty_since, 3) if f.dirty_since else None,
                             "state": f.state, "open_handles": f.open_handles, "error_code": f.error_code,
                             "error_request_id": f.error_request_id, "failed_at": f.failed_at, "error": f.error}
                            for f in dirty],
            "uploads_in_flight": [{"path": self.path_of(f.key), "key": f.key, "size": f.size,
                                   "since": f.uploading_since, "seconds": round(now - f.uploading_since, 3)}
                                  for f in dirty if f.uploading_since is not None],
            "last_errors": [error.to_json() for error in reversed(ledger.last_errors)],
            "backend": backend_verdict(stats.last_success_at, stats.last_error, stats.last_error_at).to_json(),
            "credentials": credentials_status(self.store.credentials),
            "options": options_document(self.options),
        }


# -- text ----------------------------------------------------------------------------------------------------


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds == float("inf"):
        return ">30 s"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _who(process: dict) -> str:
    return process["command"] if process["pid"] is None else f"{process['command']} (pid {process['pid']})"


def render_text(doc: dict, by: str = "process") -> str:
    """The document as a screen of text (what `ossmount stats` prints without --json)."""
    lines = []
    prefix = f"/{doc['prefix']}" if doc.get("prefix") else ""
    log = doc.get("log", {})
    target = log.get("target", "?") + (f" {log['path']}" if log.get("path") else "")
    lines.append(f"{doc['mountpoint']}: oss://{doc['bucket']}{prefix} at {doc['endpoint']}, pid {doc['pid']}, "
                 f"up {_duration(doc['at'] - doc['started_at'])}, log level {log.get('level', '?')} to {target}")
    requests = doc["requests"]
    error_count = sum(requests["errors"].values())
    lines.append(f"OSS requests: {requests['total']} ({requests['in_flight']} in flight, {requests['retries']} "
                 f"retries, {error_count} failed); received {_size(doc['bytes']['down'])}, sent "
                 f"{_size(doc['bytes']['up'])}")
    processes = doc["processes"]
    if by == "operation":
        lines.append(f"  {'operation':<26} {'requests':>9} {'failed':>7} {'p50':>9} {'p99':>9}  by process")
        for op, count in sorted(requests["by_operation"].items(), key=lambda item: -item[1]):
            failed = sum(n for key, n in requests["errors"].items() if key.split(" ", 1)[0] == op)
            latency = doc["latency_seconds"].get(op, {})
            callers = sorted(((p["requests"].get(op, 0), _who(p)) for p in processes if p["requests"].get(op)),
                             reverse=True)
            who = ", ".join(f"{name} {n}" for n, name in callers[:4]) + (" ..." if len(callers) > 4 else "")
            lines.append(f"  {op:<26} {count:>9} {failed:>7} {_duration(latency.get('p50')):>9} "
                         f"{_duration(latency.get('p99')):>9}  {who}")
    else:
        lines.append(f"  {'process':<32} {'uid':>6} {'requests':>9} {'received':>10} {'sent':>10}  by operation")
        for process in processes:
            ops = sorted(process["requests"].items(), key=lambda item: -item[1])
            detail = ", ".join(f"{op} {n}" for op, n in ops)
            uid = "-" if process["uid"] is None else str(process["uid"])
            lines.append(f"  {_who(process):<32} {uid:>6} {process['total']:>9} {_size(process['bytes_in']):>10} "
                         f"{_size(process['bytes_out']):>10}  {detail}")
    cache = doc["cache"]
    lines.append(f"Cache hit rates: stat {_percent(cache['stat']['hit_rate'])} of "
                 f"{cache['stat']['hits'] + cache['stat']['misses']}, listing {_percent(cache['listing']['hit_rate'])} "
                 f"of {cache['listing']['hits'] + cache['listing']['misses']}, data (read-ahead) "
                 f"{_percent(cache['data']['hit_rate'])} of {cache['data']['hits'] + cache['data']['misses']} reads")
    files = doc["files"]
    lines.append(f"Files: {files['open_handles']} open, {files['dirty']} dirty ({_size(files['dirty_bytes'])} not "
                 f"on OSS yet), {len(doc['uploads_in_flight'])} uploading, {files['upload_failures']} upload "
                 "failures since mount")
    for dirty in doc["dirty_files"]:
        state = dirty["state"]
        if state == "failed":
            state += f": {dirty['error_code']}" + (f" (request-id {dirty['error_request_id']})"
                                                   if dirty.get("error_request_id") else "")
        lines.append(f"  {dirty['path']}  {_size(dirty['dirty_bytes'])} dirty of {_size(dirty['size'])}, for "
                     f"{_duration(dirty['age_seconds'])}, {dirty['open_handles']} open, {state}")
    if doc["last_errors"]:
        lines.append("Last errors:")
        for error in doc["last_errors"][:10]:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(error["at"]))
            request_id = f" request-id {error['request_id']}" if error.get("request_id") else ""
            lines.append(f"  {stamp} {error['operation']} '{error['key']}' {error['code']}{request_id} "
                         f"({error['caller']})")
    return "\n".join(lines)


# -- command -----------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="ossmount stats",
        description="Show what a running mount does: OSS requests by operation and by calling process, bytes, "
                    "cache hit rates, dirty files and uploads, the last errors. Only the mount's owner and root "
                    "may ask (its control socket is mode 0600).")
    parser.add_argument("mountpoint", help="the mountpoint (or a bind mount of it)")
    parser.add_argument("--json", action="store_true", help="print the JSON document (README: Operating ossmount)")
    parser.add_argument("--watch", type=float, metavar="SECONDS", help="print again every SECONDS until Ctrl-C")
    parser.add_argument("--by", choices=("process", "operation"), default="process",
                        help="break requests down by calling process (default) or by OSS operation")
    parser.add_argument("--set-log-level", metavar="LEVEL",
                        help="change the mount's log level now: crit|err|warn|info|debug")
    args = parser.parse_args(argv)
    if args.watch is not None and not args.watch > 0:
        parser.error("--watch needs a positive number of seconds")
    path = control.socket_of(args.mountpoint)
    if args.set_log_level is not None:
        from ossmount.ops.logs import parse_level

        level = control.request(path, {"op": "set_log_level", "level": parse_level(args.set_log_level)})
        print(f"{args.mountpoint}: log level is now {level['log_level']}")
        return EXIT_OK
    try:
        while True:
            document = control.request(path, {"op": "stats"})
            if args.json:
                print(json.dumps(document, sort_keys=True), flush=True)
            else:
                if args.watch is not None and sys.stdout.isatty():
                    print("\033[H\033[2J", end="")
                print(render_text(document, args.by), flush=True)
            if args.watch is None:
                return EXIT_OK
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return EXIT_OK
