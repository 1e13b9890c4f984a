"""A volume's credentials directory: written by the daemon, re-read by its FUSE process (csi-daemon.md §0.8, §5.3).

    <run-dir>/volumes/<vh>/creds/            0700
        keys -> keys.<n>                     the FUSE process's passwd_file= (a directory, read by
        keys.<n>/AccessKeyId ...             `ossmount.credentials.read_credentials_dir`), files 0600

A rotation writes a new `keys.<n>` (files fsynced), then renames a fresh symlink over `keys`: readers see the
old keys or the new ones, never a mix (the kubelet's AtomicWriter and Alibaba's driver do the same). The
previous directory is kept for one more rotation, so a reader that resolved the old link still finds its
files. Access keys and STS tokens use the same layout, so a volume can move between them without a remount.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from ossmount.credentials import read_credentials_dir
from ossmount.daemon.api import CredentialsInput
from ossmount.errors import ConfigError

KEYS_LINK = "keys"
KEEP_OLD = 1


def keys_path(creds_dir: str) -> str:
    return os.path.join(creds_dir, KEYS_LINK)


def write_credentials(creds_dir: str, credentials: CredentialsInput) -> str:
    """Install `credentials` atomically; returns the path the FUSE process reads (`creds/keys`)."""
    os.makedirs(creds_dir, mode=0o700, exist_ok=True)
    os.chmod(creds_dir, 0o700)
    fresh = tempfile.mkdtemp(prefix=f"{KEYS_LINK}.", dir=creds_dir)
    for name, value in credentials.files().items():
        descriptor = os.open(os.path.join(fresh, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(descriptor, value.encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    link = keys_path(creds_dir)
    temp_link = os.path.join(creds_dir, f".{KEYS_LINK}.{os.path.basename(fresh)}")
    os.symlink(os.path.basename(fresh), temp_link)
    os.replace(temp_link, link)
    _remove_old(creds_dir, keep=os.path.basename(fresh))
    return link


def _remove_old(creds_dir: str, keep: str) -> None:
    old = sorted((entry for entry in os.scandir(creds_dir)
                  if entry.name.startswith(f"{KEYS_LINK}.") and entry.name != keep and entry.is_dir(follow_symlinks=False)),
                 key=lambda entry: entry.stat(follow_symlinks=False).st_mtime_ns)
    for entry in old[:max(0, len(old) - KEEP_OLD)]:
        shutil.rmtree(entry.path, ignore_errors=True)


def same_credentials(creds_dir: str, credentials: CredentialsInput) -> bool:
    """Whether the installed credentials are exactly `credentials` (compared in memory, never logged)."""
    try:
        current = read_credentials_dir(keys_path(creds_dir))
    except ConfigError:
        return False
    return (current.access_key_id, current.access_key_secret, current.security_token or "",
            current.expiration) == (credentials.access_key_id, credentials.access_key_secret,
                                    credentials.security_token, credentials.expiration)


def remove_credentials(creds_dir: str) -> None:
    shutil.rmtree(creds_dir, ignore_errors=True)
