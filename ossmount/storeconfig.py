"""What a mount's options make of its object store: credentials, request headers, copy strategy, network.

`open_store(bucket, options)` is the one place `MountOptions` become an `ObjectStore` (the mount, `ossmount
check`, the shared-mount daemon's checks and the demo use it). Files the options name (passwd_file, ahbe_conf) and the environment
($OSSSSEKMSID, $OSSMOUNT_ECS_METADATA_ENDPOINT, the credential variables) are read here; problems are ConfigError
(exit 3) naming the option.

ossfs defaults apply: connect_timeout 300 s, readwrite_timeout 120 s, retries 5 (`retry_policy`: a request is
retried 5 times after its first attempt, and an operation fails once it has spent (retries + 1) x readwrite_timeout
seconds failing without a successful request).

TLS trust (`tls_trust`): https endpoints are always verified (certificate chain and host name) unless
no_check_certificate / ssl_verify_hostname=0 relax it. The trusted authorities are, first found: `-o ca_bundle=`,
$REQUESTS_CA_BUNDLE (Python's requests), $CURL_CA_BUNDLE (what s3fs and ossfs honour through libcurl); each
replaces the defaults, as curl's --cacert does. Without one: the system's store (OpenSSL's default paths, so
$SSL_CERT_FILE and $SSL_CERT_DIR apply and a CA added with update-ca-certificates is trusted) plus certifi's
Mozilla bundle.
"""

from __future__ import annotations

import logging
import os
import ssl
from typing import TYPE_CHECKING, Any, Mapping

from ossmount import USER_AGENT
from ossmount.errors import ConfigError
from ossmount.store import ObjectStore, RetryPolicy
from ossmount.store.headers import CopyPolicy, RequestHeaders

if TYPE_CHECKING:
    from ossmount.options import MountOptions
    from ossmount.store.client import CredentialsProvider

log = logging.getLogger(__name__)

ENV_SSE_KMS_ID = "OSSSSEKMSID"  # ossfs: the key id of use_sse=kmsid
CA_BUNDLE_ENV_NAMES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # after ca_bundle=, first set wins (requests' order)


def store_credentials(bucket: str, options: "MountOptions", environ: Mapping[str, str] = os.environ, *,
                      source: "CredentialsProvider | None" = None) -> "CredentialsProvider | None":
    """The credentials provider of a mount (ossmount.credentials): None with public_bucket=1 (nothing signed);
    an `EcsRamRoleCredentials` with ram_role; else `source` if given (the daemon's keys for a volume), else
    passwd_file / the environment / /etc/passwd-ossmount (`resolve_provider`: a file or directory is re-read when
    it changes). use_session_token refuses credentials without an STS token. ConfigError names the problem."""
    from ossmount import credentials as creds

    if options.public_bucket:
        if options.passwd_file or options.ram_role or options.use_session_token or source is not None:
            log.info("public_bucket=1: requests are not signed, so no credentials are read")
        return None
    if options.ram_role is not None:
        role = None if options.ram_role == "auto" else options.ram_role
        return creds.EcsRamRoleCredentials(role, endpoint=creds.ecs_metadata_endpoint(environ))
    provider = source or creds.resolve_provider(bucket, passwd_file=options.passwd_file, environ=environ)
    if options.use_session_token:
        creds.require_session_token(provider.current())
    return provider


def user_agent(options: "MountOptions") -> str | None:
    """ossmount/VERSION, with " [instance_name]" (as ossfs adds it); None with noua."""
    if not options.user_agent:
        return None
    return USER_AGENT + (f" [{options.instance_name}]" if options.instance_name else "")


def store_headers(options: "MountOptions", prefix: str = "",
                  environ: Mapping[str, str] = os.environ) -> RequestHeaders:
    """The option-driven request headers (store/headers.py); `prefix` is the mount's, for ahbe_conf paths."""
    from ossmount.ahbe import key_headers, load_ahbe_file
    from ossmount.options import SSE_KEY_FROM_ENV

    key_id = options.sse_key_id
    if key_id == SSE_KEY_FROM_ENV:
        key_id = environ.get(ENV_SSE_KMS_ID, "").strip()
        if not key_id:
            raise ConfigError(f"use_sse=kmsid: set {ENV_SSE_KMS_ID} to the KMS key id, or write use_sse=kmsid:KEY_ID "
                              "(use_sse=kms uses OSS's default KMS key)")
    extra = key_headers(load_ahbe_file(options.ahbe_conf), prefix) if options.ahbe_conf else None
    return RequestHeaders(
        object_acl=options.default_acl, storage_class=options.storage_class,
        server_side_encryption=options.sse_algorithm, sse_key_id=key_id, request_payer=options.requester_pays,
        upload_traffic_limit=options.upload_traffic_limit, download_traffic_limit=options.download_traffic_limit,
        user_agent=user_agent(options), extra_headers=extra,
    )


def store_copy_policy(options: "MountOptions") -> CopyPolicy:
    """nocopyapi (also implied by public_bucket=1: OSS refuses anonymous copies), norenameapi, noshallowcopyapi,
    nomixupload; re-uploads go in multipart_size parts."""
    mib = 1024 * 1024
    return CopyPolicy(
        copy_api=not (options.nocopyapi or options.public_bucket), rename_api=not options.norenameapi,
        shallow_copy=not options.noshallowcopyapi, mix_upload=not options.nomixupload,
        singlepart_copy_limit=options.singlepart_copy_limit * mib,
        multipart_copy_size=options.multipart_copy_size * mib, rewrite_part_size=options.multipart_size_bytes,
    )


def tls_trust(options: "MountOptions", environ: Mapping[str, str] = os.environ) -> str | None:
    """The CA bundle (PEM file or hashed directory) https requests trust, or None for the system store plus
    certifi (module docstring). ConfigError (exit 3) names a bundle that cannot be read or holds no certificate."""
    if options.ca_bundle:
        path, origin = options.ca_bundle, "ca_bundle="
    else:
        origin = next((name for name in CA_BUNDLE_ENV_NAMES if environ.get(name)), None)
        if origin is None:
            return None
        path, origin = environ[origin], "$" + origin
    try:
        if os.path.isdir(path):
            ssl.create_default_context(capath=path)
        else:
            context = ssl.create_default_context(cafile=path)
            if not context.get_ca_certs():
                raise ssl.SSLError("no CA certificate in it")
    except FileNotFoundError:
        raise ConfigError(f"CA bundle {path} ({origin}) does not exist") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ConfigError(f"CA bundle {path} ({origin}) is not usable: {reason}; give a PEM file of CA "
                          "certificates") from None
    return path


def retry_policy(options: "MountOptions") -> RetryPolicy:
    """retries= (retries after the first attempt) and the deadline they make with readwrite_timeout= (store.retry)."""
    return RetryPolicy(max_attempts=options.retries + 1, deadline=(options.retries + 1) * options.readwrite_timeout)


def open_store(bucket: str, options: "MountOptions", *, prefix: str = "", environ: Mapping[str, str] = os.environ,
               source: "CredentialsProvider | None" = None, **tuning: Any) -> ObjectStore:
    """The store a mount of `bucket[:/prefix]` with `options` talks to (the mount, `ossmount check`, the daemon's
    checks). Credentials per `store_credentials`: `source` replaces passwd_file and the environment (the daemon
    passes a volume's keys), ram_role and public_bucket still decide first, as in the mount. `tuning` overrides
    connection limits, timeouts and the retry policy (checks want short ones); otherwise they come from the
    options. ConfigError (exit 3) for unusable options or credentials."""
    if options.sigv4 is False and options.enable_unsigned_payload:
        log.info("enable_unsigned_payload has no effect with sigv1 (as in ossfs)")
    tuning.setdefault("timeout", options.readwrite_timeout)
    tuning.setdefault("connect_timeout", options.connect_timeout)
    tuning.setdefault("retry", retry_policy(options))
    return ObjectStore.create(
        endpoint=options.url, bucket=bucket, credentials=store_credentials(bucket, options, environ, source=source),
        region=options.effective_region, sigv4=options.sigv4, headers=store_headers(options, prefix, environ),
        copy_policy=store_copy_policy(options), list_max_keys=options.list_object_max_keys,
        verify_tls=not options.no_check_certificate, verify_hostname=options.ssl_verify_hostname != "0",
        ca_bundle=None if options.no_check_certificate else tls_trust(options, environ),
        service_path=options.servicepath, path_style=options.path_style, **tuning,
    )
