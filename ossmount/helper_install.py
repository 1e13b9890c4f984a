"""`ossmount install-helper [--prefix /sbin]`: install the mount(8) helper `mount.fuse.ossmount`.

mount(8) runs `/sbin/mount.fuse.ossmount SPEC DIR [-sfnvrw] [-N NS] -o OPTS` for `mount -t fuse.ossmount`
and for fstab lines of type `fuse.ossmount`. The helper drops the options only mount(8)/systemd care
about and execs `ossmount mount SPEC DIR -o REST`. The command it runs is `$OSSMOUNT` if set, else the
absolute command written at install time (this interpreter, `-m ossmount`), else `ossmount` on PATH.

helpers/mount.fuse.ossmount in the source tree is `render_helper(None)`; a unit test keeps them equal.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

from ossmount.errors import ConfigError

HELPER_NAME = "mount.fuse.ossmount"
DEFAULT_PREFIX = "/sbin"

# Options meaningful to mount(8)/systemd only; the helper drops them (ossmount would accept them anyway).
STRIPPED_OPTIONS = ("_netdev", "nofail", "noauto", "auto", "defaults", "user", "users", "nouser", "owner", "group")
STRIPPED_PREFIXES = ("x-", "comment=")

_TEMPLATE = r"""#!/bin/sh
# mount.fuse.ossmount: the mount(8) helper for `mount -t fuse.ossmount BUCKET[:/PREFIX] DIR -o OPTS`
# and fstab lines of type fuse.ossmount. Written by `ossmount install-helper`.
# It drops options that only mount(8)/systemd use and runs: ossmount mount SPEC DIR -o REST
# The command is $OSSMOUNT if set, else the one recorded at install time, else `ossmount` on PATH.
OSSMOUNT_INSTALLED=@COMMAND@

usage() {
    echo "usage: mount.fuse.ossmount BUCKET[:/PREFIX] MOUNTPOINT [-sfnvrw] [-o OPT[,OPT...]]" >&2
    exit 2
}

spec=
dir=
opts=
fake=
while [ $# -gt 0 ]; do
    case "$1" in
        -o) [ $# -ge 2 ] || usage; opts="${opts:+$opts,}$2"; shift 2 ;;
        -o*) opts="${opts:+$opts,}${1#-o}"; shift ;;
        -N|-t) [ $# -ge 2 ] || usage; shift 2 ;;
        -r) opts="${opts:+$opts,}ro"; shift ;;
        -w) opts="${opts:+$opts,}rw"; shift ;;
        -f) fake=1; shift ;;
        -h|--help) usage ;;
        -[snvi]*) shift ;;
        --) shift ;;
        -*) echo "mount.fuse.ossmount: unknown flag '$1'" >&2; exit 2 ;;
        *)
            if [ -z "$spec" ]; then spec=$1
            elif [ -z "$dir" ]; then dir=$1
            else echo "mount.fuse.ossmount: unexpected argument '$1'" >&2; exit 2
            fi
            shift ;;
    esac
done
[ -n "$spec" ] && [ -n "$dir" ] || usage
# mount -f: pretend, as mount(8) documents
[ -n "$fake" ] && exit 0

rest=
old_ifs=$IFS
IFS=,
for opt in $opts; do
    case "$opt" in
        ""|_netdev|nofail|noauto|auto|defaults|user|users|nouser|owner|group|x-*|comment=*) ;;
        *) rest="${rest:+$rest,}$opt" ;;
    esac
done
IFS=$old_ifs

set -- mount "$spec" "$dir"
[ -n "$rest" ] && set -- "$@" -o "$rest"
if [ -n "$OSSMOUNT" ]; then
    exec $OSSMOUNT "$@"
elif [ -n "$OSSMOUNT_INSTALLED" ]; then
    eval "exec $OSSMOUNT_INSTALLED \"\$@\""
else
    exec ossmount "$@"
fi
"""


def installed_command() -> str:
    """The shell-quoted command that runs this ossmount: this interpreter with `-m ossmount`."""
    return " ".join(shlex.quote(part) for part in (os.path.abspath(sys.executable), "-m", "ossmount"))


def render_helper(command: str | None) -> str:
    """The helper script text; `command` is a shell command line (None: use `ossmount` on PATH)."""
    return _TEMPLATE.replace("@COMMAND@", shlex.quote(command) if command else "''")


def install_helper(prefix: str | os.PathLike[str] = DEFAULT_PREFIX, command: str | None = None) -> Path:
    """Write `PREFIX/mount.fuse.ossmount` (mode 0755) atomically; return its path."""
    directory = Path(prefix)
    if not directory.is_dir():
        raise ConfigError(f"cannot install the helper: {directory} is not a directory")
    target = directory / HELPER_NAME
    text = render_helper(command if command is not None else installed_command())
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{HELPER_NAME}.", dir=directory)
    except OSError as exc:
        raise ConfigError(f"cannot install the helper into {directory}: {exc.strerror} (run as root?)") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temp_name, 0o755)
        os.replace(temp_name, target)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    return target


def main(argv: list[str]) -> int:
    """`ossmount install-helper [--prefix DIR]`: install the helper and print its path."""
    parser = argparse.ArgumentParser(
        prog="ossmount install-helper",
        description="Install mount.fuse.ossmount so `mount -t fuse.ossmount` and fstab lines work.",
    )
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="directory to install into (default /sbin)")
    parser.add_argument("--command", default=None,
                        help="command the helper runs (default: this interpreter with -m ossmount)")
    args = parser.parse_args(argv)
    print(install_helper(args.prefix, args.command))
    return 0
