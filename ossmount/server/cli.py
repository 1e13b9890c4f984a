"""`ossmount serve`: run the OSS-compatible local server until SIGTERM/SIGINT.

Once the socket is bound it prints exactly one line, `ossmount serve: listening on http://HOST:PORT`,
and flushes stdout, so `--listen 127.0.0.1:0` can be used and a parent process knows the port.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
import resource
import signal
import sys

import trio

from ossmount.errors import ArgumentParser, ConfigError, UsageError
from ossmount.server.http import CORE_THREADS, FrontLimits

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")

log = logging.getLogger("ossmount.server")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="ossmount serve", description="Run the OSS-compatible local server.")
    parser.add_argument("--data-dir", required=True, help="directory holding the sqlite metadata and blobs")
    parser.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to bind (port 0 = any)")
    parser.add_argument("--credentials", required=True, metavar="FILE",
                        help="file of AK:SK or AK:SK:SECURITY_TOKEN lines")
    parser.add_argument("--bucket", action="append", default=[], metavar="NAME",
                        help="create this bucket (owned by the first key) if missing; repeatable")
    parser.add_argument("--region", default="cn-hangzhou")
    parser.add_argument("--anonymous", action="store_true",
                        help="unsigned requests act as the bucket owner (default: they get what the bucket and object "
                             "ACLs grant, e.g. a public-read-write bucket)")
    parser.add_argument("--service-path", default="", metavar="PATH",
                        help="serve the API under this path prefix (e.g. /oss), as behind a reverse proxy")
    parser.add_argument("--admin-token", default=None,
                        help="enable the /_ossmount/admin/ API, authenticated by this token")
    parser.add_argument("--service-host", action="append", default=[], metavar="HOST",
                        help="extra host name addressed path-style (virtual-hosted: BUCKET.HOST); repeatable")
    parser.add_argument("--max-skew", type=float, default=900.0, metavar="SECONDS",
                        help="largest accepted clock difference of a signed request")
    parser.add_argument("--restore-delay", type=float, default=0.0, metavar="SECONDS",
                        help="time an Archive/ColdArchive restore takes")
    parser.add_argument("--core-threads", type=_positive_int, default=CORE_THREADS, metavar="N",
                        help="worker threads running requests in the core; a request waiting for another's lock "
                        f"holds one (default {CORE_THREADS})")
    parser.add_argument("--etag", choices=("md5", "fast"), default="md5",
                        help="md5: ETags are MD5s, as OSS gives (default); fast: skip MD5 unless Content-MD5 is"
                             " sent and derive ETags from the CRC-64 (PUT throughput runs)")
    for flag, kind, metavar, text in _LIMIT_FLAGS:
        default = getattr(FrontLimits, flag[2:].replace("-", "_"))
        parser.add_argument(flag, type=kind, default=default, metavar=metavar, help=f"{text} (default {default:g})")
    parser.add_argument("-d", "--debug", action="store_true", help="log every request to stderr")
    return parser


def _positive(convert: type, what: str):
    """An argparse type: `convert(text)`, which must be positive and finite (else a one-line usage error)."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be a positive {what.split(' ', 1)[1]}: {text!r}")
        return value

    return parse


_positive_seconds = _positive(float, "a number of seconds")
_positive_int = _positive(int, "an integer")


# The front's limits (http.FrontLimits): flag, type, metavar, help.
_LIMIT_FLAGS = (
    ("--idle-timeout", _positive_seconds, "SECONDS", "close a connection that starts no request for this long"),
    ("--header-timeout", _positive_seconds, "SECONDS",
     "a request head must be complete this long after its first byte, else 408 and close"),
    ("--body-timeout", _positive_seconds, "SECONDS",
     "longest pause in a request body (then 400 RequestTimeout) or in reading a response (then close)"),
    ("--max-connections", _positive_int, "N", "connections served at once; more wait in the listen backlog"),
)


# File descriptors one connection may hold at once: its socket, a spool file, a blob being sent.
FDS_PER_CONNECTION = 3
FDS_RESERVED = 64  # listeners, sqlite connections, stdio


def raise_file_limit(max_connections: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit so that `max_connections` connections fit (up to the hard limit); returns
    how many connections fit after that."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections * FDS_PER_CONNECTION + FDS_RESERVED
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
            soft = new_soft
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, (soft - FDS_RESERVED) // FDS_PER_CONNECTION))


def parse_listen(value: str) -> tuple[str, int]:
    """Split `HOST:PORT` (`[v6]:PORT` for IPv6); raises UsageError."""
    match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", value)
    if not match:
        raise UsageError(f"--listen must be HOST:PORT, not {value!r}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise UsageError(f"--listen port out of range: {port}")
    return host, port


def _url_host(host: str) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


def main(argv: list[str]) -> int:
    """Entry point of `ossmount serve`."""
    args = build_parser().parse_args(argv)
    host, port = parse_listen(args.listen)
    for name in args.bucket:
        if not BUCKET_NAME.fullmatch(name):
            raise UsageError(f"invalid bucket name {name!r}: 3-63 characters of a-z, 0-9 and '-'")
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from ossmount.server.core import ServerCore
    from ossmount.server.core.auth import CredentialStore

    try:
        credentials = CredentialStore.from_file(args.credentials)
    except OSError as exc:
        raise ConfigError(f"cannot read credentials file {args.credentials}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"bad credentials file {args.credentials}: {exc}") from None
    try:
        os.makedirs(args.data_dir, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create data directory {args.data_dir}: {exc.strerror}") from None

    core = ServerCore(
        args.data_dir,
        credentials=credentials,
        region=args.region,
        anonymous=args.anonymous,
        service_hosts=tuple(args.service_host),
        max_skew=args.max_skew,
        restore_delay=args.restore_delay,
        service_path=args.service_path,
    )
    try:
        if args.bucket:
            owner = credentials.first().access_key_id
            for name in args.bucket:
                core.ensure_bucket(name, owner)
        trio.run(_serve, core, host, port, args)
    finally:
        close = getattr(core, "close", None)
        if close is not None:
            close()
    return 0


async def _serve(core, host: str, port: int, args: argparse.Namespace) -> None:
    from ossmount.server.faults import AdminApi
    from ossmount.server.http import HttpFront

    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound_port = listeners[0].socket.getsockname()[1]
    admin = AdminApi(token=args.admin_token, fsck=core.check_consistency)
    max_connections = raise_file_limit(args.max_connections)
    if max_connections < args.max_connections:
        log.warning("the open-file limit allows %d connections, not --max-connections %d (raise ulimit -n)",
                    max_connections, args.max_connections)
    limits = FrontLimits(idle_timeout=args.idle_timeout, header_timeout=args.header_timeout,
                         body_timeout=args.body_timeout, max_connections=max_connections)
    front = HttpFront(core, admin, core_threads=args.core_threads, etag=args.etag, limits=limits)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(front.serve, listeners)
            print(f"ossmount serve: listening on http://{_url_host(host)}:{bound_port}", flush=True)
            async for signum in signals:
                log.info("received signal %d, shutting down", signum)
                nursery.cancel_scope.cancel()
                break
