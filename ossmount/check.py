"""`ossmount check BUCKET[:/PREFIX] -o url=...`: the checks a mount runs first, without mounting.

What is checked, in order (the equivalent of the console's OSS volume check):
  1. The endpoint answers, the credentials are accepted and the bucket exists, and the key may list the
     prefix: all from one ListObjects(max-keys) on the prefix, which needs only `oss:ListObjects` — the
     permission a mount cannot work without. (GetBucketInfo would need `oss:GetBucketInfo`, which RAM
     users of a bucket they do not own often lack.)
  2. Whether the prefix holds anything ("exists") or not yet ("empty": the mount shows an empty
     directory and creates keys under it on write).
  3. Bucket location and storage class via GetBucketInfo, reported as unknown when not permitted
     (`ossmount check` only: a mount has no use for them and skips the request).
  4. Optionally, write permission: InitiateMultipartUpload + AbortMultipartUpload on a probe key, which
     needs `oss:PutObject` and leaves no object behind. A refusal is reported, not fatal.

Each fatal failure raises a `CheckError` (a QuietError): one line naming the OSS error code and what to
do, with the exit code from `ossmount.errors`. The checks never retry and use a short connect timeout,
so an unreachable endpoint fails in a few seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from ossmount.logsafety import setup_logging
from ossmount.errors import EXIT_AUTH, EXIT_BUCKET, EXIT_CONFIG, EXIT_UNREACHABLE, QuietError
from ossmount.store import ObjectStore, RetryPolicy
from ossmount.store import types
from ossmount.storeconfig import open_store

log = logging.getLogger(__name__)

SAMPLE_KEYS = 10
PROBE_KEY_NAME = ".ossmount-write-probe"
CHECK_CONNECT_TIMEOUT = 3.0
CHECK_READ_TIMEOUT = 8.0


class CheckError(QuietError):
    """A mount-time check failed; `code` is the OSS error code (or ConnectionError)."""

    def __init__(self, message: str, exit_code: int, code: str):
        super().__init__(message, exit_code)
        self.code = code


@dataclass(frozen=True)
class CheckReport:
    """What `check_target` found."""

    endpoint: str
    bucket: str
    prefix: str
    region: str | None
    auth_version: str
    access_key_id: str
    prefix_exists: bool
    sample_objects: int
    sample_prefixes: int
    sample_truncated: bool
    location: str | None = None
    storage_class: str | None = None
    bucket_info_error: str | None = None
    can_write: bool | None = None  # None: not checked
    write_error: str | None = None

    def lines(self) -> list[str]:
        """The human-readable report, one fact per line."""
        shown_prefix = "/" + self.prefix
        if self.prefix_exists:
            more = "+" if self.sample_truncated else ""
            prefix_state = (f"{shown_prefix} exists ({self.sample_objects}{more} objects, "
                            f"{self.sample_prefixes} subdirectories in the first {SAMPLE_KEYS} entries)")
        elif self.prefix:
            prefix_state = f"{shown_prefix} is empty (no keys yet; the mount shows an empty directory)"
        else:
            prefix_state = "/ (bucket root) is empty"
        if self.bucket_info_error:
            bucket_line = f"{self.bucket} (location unknown: {self.bucket_info_error})"
        else:
            bucket_line = f"{self.bucket} (location {self.location or '?'}, storage class {self.storage_class or '?'})"
        if self.can_write is None:
            write = "not checked"
        elif self.can_write:
            write = "yes"
        else:
            write = f"no ({self.write_error})"
        return [
            f"endpoint:     {self.endpoint}",
            f"bucket:       {bucket_line}",
            f"region:       {self.region or 'not set'}",
            f"auth:         {self.auth_version} signature, AccessKey ID {self.access_key_id}",
            f"prefix:       {prefix_state}",
            f"permissions:  list yes; write {write}",
        ]


@dataclass(frozen=True)
class CredentialsHints:
    """Where the user fixes each credential, for the messages of `explain` (the CLI's and the daemon's differ)."""

    access_key_id: str = "passwd_file / OSS_ACCESS_KEY_ID"
    access_key_secret: str = "passwd_file / OSS_ACCESS_KEY_SECRET"
    security_token: str = "OSS_SESSION_TOKEN or the credentials file"


def explain(error: types.StoreError, *, endpoint: str, bucket: str, prefix: str, access_key_id: str,
            hints: CredentialsHints = CredentialsHints()) -> CheckError:
    """The one-line, actionable `CheckError` for a store error met while checking a mount target."""
    code = error.code
    target = f"oss://{bucket}/{prefix}"
    if code == "InvalidAccessKeyId":
        return CheckError(f"InvalidAccessKeyId: the AccessKey ID {access_key_id} is not known to {endpoint}; "
                          f"check {hints.access_key_id}", EXIT_AUTH, code)
    if code == "SignatureDoesNotMatch":
        return CheckError(f"SignatureDoesNotMatch: {endpoint} rejected the signature of AccessKey ID "
                          f"{access_key_id}: the AccessKey secret is wrong; check {hints.access_key_secret} "
                          "(and region= with sigv4)", EXIT_AUTH, code)
    if code in ("InvalidSecurityToken", "SecurityTokenExpired"):
        return CheckError(f"{code}: {endpoint} refused the STS security token of AccessKey ID {access_key_id}; "
                          f"supply a fresh token ({hints.security_token})", EXIT_AUTH, code)
    if code == "CredentialsUnavailable":
        return CheckError(str(error).split(": no credentials to sign with: ", 1)[-1].split(" [", 1)[0],
                          EXIT_CONFIG, code)
    if code == "RequestTimeTooSkewed":
        return CheckError(f"RequestTimeTooSkewed: this machine's clock differs from {endpoint}'s by more than "
                          "15 minutes; synchronise it (chrony / systemd-timesyncd)", EXIT_AUTH, code)
    if isinstance(error, types.NoSuchBucket) or code == "NoSuchBucket":
        return CheckError(f"NoSuchBucket: bucket '{bucket}' does not exist at {endpoint}; check the bucket "
                          "name and that url= is the endpoint of the bucket's region", EXIT_BUCKET, code)
    if isinstance(error, types.AccessDenied):
        return CheckError(f"{code or 'AccessDenied'}: AccessKey ID {access_key_id} may not list {target}; "
                          "grant oss:ListObjects on the bucket (plus oss:GetObject, and oss:PutObject/"
                          "oss:DeleteObject for writes) in its RAM or bucket policy", EXIT_BUCKET,
                          code or "AccessDenied")
    if code == "TLSError":
        reason = str(error.args[0]).split("TLS failed: ", 1)[-1]
        return CheckError(f"TLSError: the TLS connection to {endpoint} failed ({reason}); trust its certificate "
                          "authority with -o ca_bundle=FILE (a PEM file), or (insecure) add -o no_check_certificate "
                          "or -o ssl_verify_hostname=0", EXIT_UNREACHABLE, code)
    if isinstance(error, types.EndpointUnreachable):
        reason = str(error.args[0]).split("endpoint unreachable: ", 1)[-1]
        return CheckError(f"ConnectionError: cannot reach {endpoint} ({reason}); check url= and the network "
                          "(inside a VPC use the -internal endpoint)", EXIT_UNREACHABLE, "ConnectionError")
    if isinstance(error, types.TransientError):
        return CheckError(f"{code or 'ServiceUnavailable'}: {endpoint} did not answer usably ({error}); "
                          "check url= and retry later", EXIT_UNREACHABLE, code or "ServiceUnavailable")
    return CheckError(f"{code or 'Error'}: checking {target} at {endpoint} failed: {error}", EXIT_BUCKET,
                      code or "Error")


async def check_target(store: ObjectStore, prefix: str, *, check_write: bool = False,
                       v2: bool = True, bucket_info: bool = True, hints: CredentialsHints = CredentialsHints(),
                       connect_timeout: float = CHECK_CONNECT_TIMEOUT,
                       timeout: float = CHECK_READ_TIMEOUT) -> CheckReport:
    """Check that `store`'s bucket can be mounted at `prefix` ("" or ending in '/'); raise CheckError if not.

    Requests are made once, without retries, with a 3 s connect timeout (8 s per read; the daemon passes less when
    its request's deadline is nearer), so a failure is reported in seconds whatever connect_timeout the mount uses.
    `hints` say where the user fixes each credential in the messages.
    """
    quick = store.with_retry(RetryPolicy.no_retries(), connect_timeout=connect_timeout, timeout=timeout)
    context = dict(endpoint=store.endpoint, bucket=store.bucket_name, prefix=prefix,
                   access_key_id=store.access_key_id, hints=hints)
    try:
        page = await quick.list_page(prefix, delimiter="/", max_keys=SAMPLE_KEYS, v2=v2)
    except types.StoreError as error:
        raise explain(error, **context) from error
    objects = [o for o in page.objects if o.key != prefix]  # the directory object itself is no content
    prefix_exists = bool(page.objects or page.prefixes)

    location = storage_class = bucket_info_error = None
    if bucket_info:
        try:
            info = await quick.bucket_info()
            location, storage_class = info.get("location"), info.get("storage_class")
        except types.StoreError as error:
            bucket_info_error = error.code or type(error).__name__

    can_write: bool | None = None
    write_error = None
    if check_write:
        probe = prefix + PROBE_KEY_NAME
        try:
            upload_id = await quick.init_multipart(probe)
            await quick.abort_multipart(probe, upload_id)
            can_write = True
        except types.StoreError as error:
            can_write = False
            write_error = error.code or type(error).__name__

    return CheckReport(
        endpoint=store.endpoint, bucket=store.bucket_name, prefix=prefix, region=store.region,
        auth_version="v4" if store.sigv4 else "v1", access_key_id=store.access_key_id,
        prefix_exists=prefix_exists, sample_objects=len(objects), sample_prefixes=len(page.prefixes),
        sample_truncated=page.next_token is not None, location=location, storage_class=storage_class,
        bucket_info_error=bucket_info_error, can_write=can_write, write_error=write_error,
    )


USAGE = "usage: ossmount check BUCKET[:/PREFIX] -o url=ENDPOINT [-o OPT[,OPT...]]... [-d]"


def main(argv: list[str]) -> int:
    """`ossmount check`: resolve options and credentials as a mount would, run the checks, print the report."""
    from ossmount.options import format_options_help, parse_check_args

    args = parse_check_args(argv)
    if args.show_help:
        print(USAGE)
        print(format_options_help())
        return 0
    options = args.options
    setup_logging(args.debug, timestamps=not options.no_time_stamp_msg, instance=options.instance_name)
    store = open_store(args.bucket, options, prefix=args.prefix, max_connections=2, timeout=CHECK_READ_TIMEOUT,
                       connect_timeout=CHECK_CONNECT_TIMEOUT, retry=RetryPolicy.no_retries())
    report = trio.run(lambda: check_target(store, args.prefix, check_write=not options.read_only,
                                           v2=options.list_objects_v2))
    for line in report.lines():
        print(line)
    return 0
